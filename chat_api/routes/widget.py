"""The widget's conversation: start it (the only call without a token; it returns the token
bound to that one conversation), read it, and ask for a human.

Messages and their replies are in `widget_messages` (plain) and `widget_stream` (SSE), ratings
in `widget_ratings`; every widget route answers the errors of `chat_api.errors.WIDGET_ERRORS`.
"""

from __future__ import annotations

from fastapi import Depends, Request, status

from chat_api import live
from chat_api.dependencies import (
    DbSession,
    WidgetConversation,
    WidgetWrite,
    conversation_start_limit,
)
from chat_api.errors import ConflictError
from chat_api.replies import hand_off
from chat_api.routing import widget_router
from chat_api.schemas import (
    AskForHuman,
    ConversationOut,
    ConversationStarted,
    HandoffOut,
    MessageOut,
    StartConversation,
)
from chat_api.state import app_state
from chat_api.views import conversation_out
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import RatingRepository

router = widget_router()


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(conversation_start_limit)],
    summary="Start a conversation",
)
def start_conversation(
    request: Request, session: DbSession, body: StartConversation | None = None
) -> ConversationStarted:
    body = body or StartConversation()
    conversation = ConversationRepository(session).create(site=body.site, locale=body.locale)
    token, expires_at = app_state(request)["signer"].issue(conversation.id)
    return ConversationStarted(conversation_id=conversation.id, token=token, expires_at=expires_at)


@router.get("/conversations/{conversation_id}", summary="Read the conversation")
def read_conversation(conversation_id: WidgetConversation, session: DbSession) -> ConversationOut:
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    ratings = RatingRepository(session).for_conversation(conversation_id)
    return conversation_out(conversation, repo.messages(conversation_id), ratings)


@router.post("/conversations/{conversation_id}/handoff", summary="Ask for a human")
def ask_for_human(
    request: Request,
    conversation_id: WidgetWrite,
    session: DbSession,
    body: AskForHuman | None = None,
) -> HandoffOut:
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    if conversation.status == "closed":
        raise ConflictError("this conversation is closed; start a new one")
    reason = (body.reason if body and body.reason else None) or "customer_request"
    change = hand_off(session, conversation_id, reason)
    notice = change.notice if change is not None else None
    if change is not None:
        app_state(request)["metrics"].handoffs.labels("customer_request").inc()
    out = HandoffOut(
        conversation_id=conversation.id,
        handed_off=conversation.handed_off,
        handed_off_at=conversation.handed_off_at,
        message=MessageOut.model_validate(notice) if notice else None,
    )
    session.commit()  # before the operators hear of it (`chat_api.live`)
    live.announce_change(app_state(request), change)
    return out
