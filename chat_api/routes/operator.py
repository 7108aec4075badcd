"""Operator API: log in, review conversations, correct replies, label intents, see metrics.

Every write is recorded in the audit log in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse

from chat_api.dependencies import (
    CurrentOperator,
    DbSession,
    bearer_token,
    client_ip,
    login_limit,
)
from chat_api.errors import error_response
from chat_api.input_types import Offset, QueryTime, Text
from chat_api.login_lockout import attempt_login, lockout_policy
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import (
    ConversationPage,
    CorrectionOut,
    CorrectReply,
    ErrorBody,
    LabelIntent,
    Login,
    LoginOut,
    MetricsSummary,
    ModelVersionOut,
    OperatorConversationOut,
    OperatorOut,
)
from chat_api.state import app_state, settings_of
from chat_api.views import conversation_summary, operator_conversation_out
from feedback.monitor import window_metrics
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationFilter, ConversationRepository
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.operators import OperatorRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    404: {"model": ErrorBody, "description": "Not found."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}

logger = logging.getLogger(__name__)

router = APIRouter(
    route_class=TransactionEndingRoute, prefix="/v1/operator", tags=["operator"], responses=_ERRORS
)


@router.post(
    "/login",
    dependencies=[Depends(login_limit)],
    response_model=LoginOut,
    summary="Log in with e-mail and password; returns a bearer token",
    responses={
        429: {
            "model": ErrorBody,
            "description": "Too many attempts from this client (`rate_limited`), or too many "
            "wrong passwords for this e-mail (`login_locked`); Retry-After says when to retry.",
        }
    },
)
def login(request: Request, body: Login, session: DbSession) -> LoginOut | JSONResponse:
    # Refusals are returned, not raised: raising rolls back the unit of work, and the failure
    # count, the lock and their audit entries must be committed.
    settings = settings_of(request)
    ip = client_ip(request)
    result = attempt_login(
        session,
        app_state(request)["login_shadow"],
        body.email,
        body.password,
        policy=lockout_policy(settings.auth),
        ip=ip,
    )
    if result.retry_after:
        logger.warning("login refused from %s: the e-mail is locked", ip)
        return error_response(
            429,
            "login_locked",
            "too many wrong passwords for this e-mail; logins to it are refused for "
            f"{result.retry_after} s, even with the right password. Retry after that, or ask "
            "an admin if you have forgotten the password",
            {"Retry-After": str(result.retry_after)},
            retry_after=result.retry_after,
        )
    operator = result.operator
    if operator is None or not operator.active:
        logger.warning("failed operator login from %s", ip)
        message = (
            "wrong e-mail or password"
            if operator is None
            else "this operator account is deactivated; ask an admin to reactivate it"
        )
        return error_response(401, "login_failed", message, {"WWW-Authenticate": "Bearer"})
    repo = OperatorRepository(session)
    ttl = dt.timedelta(minutes=settings.auth.operator_token_ttl_minutes)
    issued = repo.issue_session(operator, ttl=ttl)
    AuditRepository(session).by_operator(
        operator.id,
        "operator.login",
        "operator",
        str(operator.id),
        {"ip": ip},
    )
    return LoginOut(
        access_token=issued.token,
        expires_at=issued.expires_at,
        operator=OperatorOut.model_validate(operator),
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke this token")
def logout(
    operator: CurrentOperator, session: DbSession, token: Annotated[str, Depends(bearer_token)]
) -> None:
    OperatorRepository(session).revoke_session(token)
    AuditRepository(session).by_operator(
        operator.id, "operator.logout", "operator", str(operator.id), {}
    )


@router.get("/me", summary="The logged-in operator")
def me(operator: CurrentOperator) -> OperatorOut:
    return OperatorOut.model_validate(operator)


@router.get("/conversations", summary="List conversations, newest first, with filters")
def list_conversations(
    _operator: CurrentOperator,
    session: DbSession,
    rating: Annotated[
        Literal["down", "up", "low_csat", "rated", "unrated"] | None,
        Query(description="down/up: a thumbs rating; low_csat: CSAT 1-2 anywhere."),
    ] = None,
    intent: Annotated[Text | None, Query(max_length=120)] = None,
    handed_off: bool | None = None,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    model_version: Annotated[Text | None, Query(max_length=120)] = None,
    q: Annotated[Text | None, Query(max_length=200, description="Text search")] = None,
    conversation_status: Annotated[Literal["open", "closed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> ConversationPage:
    filters = ConversationFilter(
        rating=rating,
        intent=intent,
        handed_off=handed_off,
        since=_aware(since),
        until=_aware(until),
        model_version=model_version,
        query=q,
        status=conversation_status,
    )
    rows, total = ConversationRepository(session).search(filters, limit=limit, offset=offset)
    return ConversationPage(
        items=[conversation_summary(c) for c in rows], total=total, limit=limit, offset=offset
    )


@router.get("/conversations/{conversation_id}", summary="One conversation with everything")
def read_conversation(
    conversation_id: uuid.UUID, _operator: CurrentOperator, session: DbSession
) -> OperatorConversationOut:
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    return operator_conversation_out(
        conversation,
        repo.messages(conversation_id),
        RatingRepository(session).for_conversation(conversation_id),
        CorrectionRepository(session).for_conversation(conversation_id),
    )


@router.post(
    "/messages/{message_id}/correction",
    status_code=status.HTTP_201_CREATED,
    summary="Correct an assistant reply and/or its intent",
    responses={409: {"model": ErrorBody, "description": "Not an assistant reply."}},
)
def correct_reply(
    message_id: uuid.UUID, body: CorrectReply, operator: CurrentOperator, session: DbSession
) -> CorrectionOut:
    message = ConversationRepository(session).get_message(message_id)
    correction = CorrectionRepository(session).add(
        message,
        operator_id=operator.id,
        corrected_text=body.corrected_text,
        corrected_intent=body.corrected_intent,
        exclude_from_training=body.exclude_from_training,
        note=body.note,
    )
    AuditRepository(session).by_operator(
        operator.id,
        "message.correct",
        "message",
        str(message.id),
        {
            "correction_id": str(correction.id),
            "conversation_id": str(message.conversation_id),
            "corrected_text": correction.corrected_text is not None,
            "corrected_intent": correction.corrected_intent,
            "previous_intent": message.intent,
            "exclude_from_training": correction.exclude_from_training,
        },
    )
    return CorrectionOut.model_validate(correction)


@router.post(
    "/messages/{message_id}/intent",
    status_code=status.HTTP_201_CREATED,
    summary="Label the intent of a message (confirms or corrects the predicted one)",
)
def label_intent(
    message_id: uuid.UUID, body: LabelIntent, operator: CurrentOperator, session: DbSession
) -> CorrectionOut:
    message = ConversationRepository(session).get_message(message_id)
    correction = CorrectionRepository(session).add(
        message, operator_id=operator.id, corrected_intent=body.intent, note=body.note
    )
    AuditRepository(session).by_operator(
        operator.id,
        "message.label_intent",
        "message",
        str(message.id),
        {
            "correction_id": str(correction.id),
            "conversation_id": str(message.conversation_id),
            "intent": body.intent,
            "previous_intent": message.intent,
        },
    )
    return CorrectionOut.model_validate(correction)


@router.get("/metrics/summary", summary="Ratings, CSAT, handoffs, intent accuracy, latency")
def metrics_summary(
    _operator: CurrentOperator,
    session: DbSession,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    model_version: Annotated[Text | None, Query(max_length=120)] = None,
) -> MetricsSummary:
    metrics = window_metrics(
        session, since=_aware(since), until=_aware(until), model_version=model_version
    )
    production = ModelVersionRepository(session).resolve_alias(PRODUCTION)
    return MetricsSummary(
        **metrics.model_dump(), production_model=production.id if production else None
    )


@router.get("/models", summary="Registered model versions and their aliases")
def list_models(_operator: CurrentOperator, session: DbSession) -> list[ModelVersionOut]:
    repo = ModelVersionRepository(session)
    production = repo.resolve_alias(PRODUCTION)
    return [
        ModelVersionOut(
            id=v.id,
            bundle_uri=v.bundle_uri,
            checksum=v.checksum,
            metrics=v.metrics,
            created_at=v.created_at,
            aliases=[PRODUCTION] if production is not None and production.id == v.id else [],
        )
        for v in repo.list()
    ]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
