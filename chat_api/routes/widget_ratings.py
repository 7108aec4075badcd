"""The widget's ratings: thumbs and/or CSAT on an assistant reply, CSAT for the conversation."""

from __future__ import annotations

import uuid

from fastapi import Request

from chat_api.dependencies import DbSession, WidgetWrite
from chat_api.errors import NotFoundError, Unprocessable
from chat_api.routing import widget_router
from chat_api.schemas import GiveCsat, RateReply, RatingOut
from chat_api.state import app_state, settings_of
from chat_api.views import rating_out
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import RatingRepository

router = widget_router()


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/rating",
    summary="Rate an assistant reply (thumbs and/or CSAT); a new rating replaces the old",
)
def rate_reply(
    request: Request,
    conversation_id: WidgetWrite,
    message_id: uuid.UUID,
    body: RateReply,
    session: DbSession,
) -> RatingOut:
    if body.thumbs is None and body.csat is None:
        raise Unprocessable("give `thumbs` (up/down) and/or `csat` (1-5)", code="empty_rating")
    _check_comment(request, body.comment)
    repo = ConversationRepository(session)
    message = repo.get_message(message_id)
    if message.conversation_id != conversation_id:
        raise NotFoundError(f"message {message_id} is not in this conversation")
    thumbs = {"up": 1, "down": -1}[body.thumbs] if body.thumbs else None
    rating = RatingRepository(session).rate_message(
        message, thumbs=thumbs, csat=body.csat, comment=body.comment
    )
    metrics = app_state(request)["metrics"]
    if body.thumbs:
        metrics.ratings.labels(f"thumbs_{body.thumbs}").inc()
    if body.csat:
        metrics.ratings.labels("csat").inc()
    return rating_out(rating)


@router.post("/conversations/{conversation_id}/csat", summary="Give CSAT for the conversation")
def give_csat(
    request: Request, conversation_id: WidgetWrite, body: GiveCsat, session: DbSession
) -> RatingOut:
    _check_comment(request, body.comment)
    conversation = ConversationRepository(session).get(conversation_id)
    rating = RatingRepository(session).rate_conversation(
        conversation, csat=body.score, comment=body.comment
    )
    app_state(request)["metrics"].ratings.labels("csat").inc()
    return rating_out(rating)


def _check_comment(request: Request, comment: str | None) -> None:
    limit = settings_of(request).api.max_comment_chars
    if comment is not None and len(comment) > limit:
        raise Unprocessable(
            f"the comment has {len(comment)} characters; the limit is {limit}",
            code="comment_too_long",
        )
