"""Operator sessions: log in (with the login lockout), log out, who am I.

Logins and logouts are recorded in the audit log in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse

from chat_api.dependencies import CurrentOperator, DbSession, bearer_token, client_ip, login_limit
from chat_api.errors import OPERATOR_ERRORS, error_response
from chat_api.login_lockout import attempt_login, lockout_policy
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import ErrorBody, Login, LoginOut, OperatorOut
from chat_api.state import app_state, settings_of
from feedback.repositories.audit import AuditRepository
from feedback.repositories.operators import OperatorRepository

logger = logging.getLogger(__name__)

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
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
