"""The operators' inbox: `GET /v1/operator/inbox` (the handed-off conversations, by view) and
`GET /v1/operator/inbox/events` (server-sent `inbox` events with the queue's counts, see
`chat_api.conversation_stream`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from chat_api.conversation_stream import SSE_HEADERS, inbox_events
from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import OPERATOR_ERRORS
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import InboxItem, InboxOut
from feedback.models import utcnow
from feedback.repositories.inbox import InboxRepository, waiting_seconds

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)


@router.get("/inbox", summary="Conversations handed to a human: the queue, mine, all, resolved")
def read_inbox(
    operator: CurrentOperator,
    session: DbSession,
    view: Annotated[
        Literal["waiting", "mine", "all", "resolved"],
        Query(
            description="waiting: the queue, oldest first; mine: the ones you have; all: "
            "waiting and with any operator; resolved: newest first."
        ),
    ] = "waiting",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxOut:
    repo = InboxRepository(session)
    counts = repo.counts(operator.id)
    now = utcnow()
    items = [
        InboxItem(
            conversation_id=row.conversation.id,
            state=row.conversation.state,
            handoff_reason=row.conversation.handoff_reason,
            waiting_since=row.conversation.handed_off_at,
            waiting_seconds=waiting_seconds(row.conversation, now),
            assigned_operator_id=row.conversation.assigned_operator_id,
            assigned_operator_email=row.assigned_operator_email,
            last_customer_text=row.last_customer_text,
            message_count=row.conversation.message_count,
            updated_at=row.conversation.updated_at,
        )
        for row in repo.list(view, operator.id, limit=limit)
    ]
    return InboxOut(waiting_count=counts.waiting, mine_count=counts.mine, items=items)


@router.get(
    "/inbox/events",
    response_class=StreamingResponse,
    summary="Live counts of the queue (server-sent events)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "event: inbox {waiting_count, mine_count} at connect and on change.",
        }
    },
)
def inbox_events_stream(request: Request, operator: CurrentOperator) -> StreamingResponse:
    events = inbox_events(request, operator.id)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
