"""Operator review: list conversations with filters, read one with everything in it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import OPERATOR_ERRORS
from chat_api.input_types import Offset, QueryTime, Text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import ConversationPage, OperatorConversationOut
from chat_api.views import conversation_summary, operator_conversation_out
from feedback.repositories.conversations import ConversationFilter, ConversationRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)


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
        since=since,
        until=until,
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
