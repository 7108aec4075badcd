"""The widget's live events: `GET /v1/widget/conversations/{id}/events` (server-sent events).

What the customer sees without reloading: agent replies, system notices, state changes (an
agent joined, resolved, the bot is back) and the agent's typing; events and resume as in
`chat_api.conversation_stream`. The widget token is bound to its conversation: another
conversation's token is refused (403).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import StreamingResponse

from chat_api.conversation_stream import (
    CONVERSATION_EVENTS,
    LastEventId,
    ResumeAfter,
    conversation_stream_response,
)
from chat_api.dependencies import DbSession, WidgetConversation
from chat_api.routing import widget_router

router = widget_router()


@router.get(
    "/conversations/{conversation_id}/events",
    response_class=StreamingResponse,
    summary="Live events of the conversation (server-sent events)",
    responses=CONVERSATION_EVENTS,
)
def conversation_events_stream(
    request: Request,
    conversation_id: WidgetConversation,
    session: DbSession,
    after: ResumeAfter = None,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    return conversation_stream_response(
        request, session, conversation_id, after=after, last_event_id=last_event_id,
        typing_of="agent",
    )  # fmt: skip
