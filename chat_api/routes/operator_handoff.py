"""An operator's side of a handoff: claim, assign (admins), reply, resolve, hand back, typing,
and the conversation's live events.

    POST /v1/operator/conversations/{id}/claim       -> HandoffStateOut
    POST /v1/operator/conversations/{id}/assign      {"operator_id"} (admins) -> HandoffStateOut
    POST /v1/operator/conversations/{id}/messages    {"text"} -> 201 MessageOut (role agent)
    POST /v1/operator/conversations/{id}/resolve     -> HandoffStateOut
    POST /v1/operator/conversations/{id}/hand-back   -> HandoffStateOut
    POST /v1/operator/conversations/{id}/typing      -> 204
    GET  /v1/operator/conversations/{id}/events      server-sent events (`conversation_stream`)

The state changes are `feedback.handoff`'s (permissions: 403 another operator has it, 409 not in
a state the action applies to). Each route commits, THEN announces on the live bus. Operator
messages have the widget's text limits and its per-minute limit, counted per operator.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse

from chat_api import live
from chat_api.conversation_stream import (
    CONVERSATION_EVENTS,
    LastEventId,
    ResumeAfter,
    conversation_stream_response,
)
from chat_api.dependencies import CurrentOperator, DbSession, current_operator, enforce_limit
from chat_api.errors import OPERATOR_ERRORS
from chat_api.replies import check_text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import AgentMessageIn, AssignConversation, HandoffStateOut, MessageOut
from chat_api.state import app_state, settings_of
from feedback import handoff
from feedback.errors import NotPermitted
from feedback.models import Operator, OperatorRole
from feedback.repositories.conversations import ConversationRepository

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator/conversations",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)


async def operator_message_limit(
    request: Request, operator: Annotated[Operator, Depends(current_operator)]
) -> Operator:
    """The operator, within the widget's per-minute message limit (counted per operator)."""
    limit = settings_of(request).rate_limit.per_conversation_per_minute
    await enforce_limit(request, "operator_message", str(operator.id), limit, 60)
    return operator


def _out(change: handoff.Change) -> HandoffStateOut:
    return HandoffStateOut(
        conversation_id=change.conversation_id,
        state=change.to_state,
        assigned_operator_id=change.assigned_operator_id,
        message=MessageOut.model_validate(change.notice) if change.notice else None,
    )


def _committed(request: Request, session: DbSession, change: handoff.Change) -> HandoffStateOut:
    out = _out(change)
    session.commit()
    live.announce_change(app_state(request), change)
    return out


@router.post("/{conversation_id}/claim", summary="Take a waiting conversation")
def claim(
    request: Request, conversation_id: uuid.UUID, operator: CurrentOperator, session: DbSession
) -> HandoffStateOut:
    return _committed(request, session, handoff.claim(session, conversation_id, operator))


@router.post("/{conversation_id}/assign", summary="Give a conversation to an operator (admins)")
def assign(
    request: Request,
    conversation_id: uuid.UUID,
    body: AssignConversation,
    operator: CurrentOperator,
    session: DbSession,
) -> HandoffStateOut:
    change = handoff.assign(session, conversation_id, operator, body.operator_id)
    return _committed(request, session, change)


@router.post("/{conversation_id}/resolve", summary="Mark the case resolved")
def resolve(
    request: Request, conversation_id: uuid.UUID, operator: CurrentOperator, session: DbSession
) -> HandoffStateOut:
    return _committed(request, session, handoff.resolve(session, conversation_id, operator))


@router.post("/{conversation_id}/hand-back", summary="Let the bot answer again")
def hand_back(
    request: Request, conversation_id: uuid.UUID, operator: CurrentOperator, session: DbSession
) -> HandoffStateOut:
    return _committed(request, session, handoff.hand_back(session, conversation_id, operator))


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    summary="Reply to the customer as an agent",
)
def post_agent_message(
    request: Request,
    conversation_id: uuid.UUID,
    body: AgentMessageIn,
    operator: Annotated[Operator, Depends(operator_message_limit)],
    session: DbSession,
) -> MessageOut:
    check_text(settings_of(request).api, body.text)
    message, change = handoff.agent_reply(session, conversation_id, operator, body.text)
    out = MessageOut.model_validate(message)
    session.commit()
    state = app_state(request)
    live.announce_change(state, change)
    live.announce_conversation(state, conversation_id)
    return out


@router.post(
    "/{conversation_id}/typing",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Tell the customer you are typing (not stored)",
)
def agent_typing(
    request: Request, conversation_id: uuid.UUID, operator: CurrentOperator, session: DbSession
) -> Response:
    conversation = ConversationRepository(session).get(conversation_id)
    mine = conversation.assigned_operator_id == operator.id
    if not mine and operator.role != OperatorRole.ADMIN.value:
        raise NotPermitted("claim the conversation before typing in it")
    session.commit()
    live.typing(app_state(request), conversation_id, "agent")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{conversation_id}/events",
    response_class=StreamingResponse,
    summary="Live events of a conversation (server-sent events)",
    responses=CONVERSATION_EVENTS,
)
def conversation_events_stream(
    request: Request,
    conversation_id: uuid.UUID,
    _operator: CurrentOperator,
    session: DbSession,
    after: ResumeAfter = None,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    return conversation_stream_response(
        request, session, conversation_id, after=after, last_event_id=last_event_id,
        typing_of="customer",
    )  # fmt: skip
