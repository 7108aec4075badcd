"""Turning store rows into response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from chat_api.schemas import (
    ConversationOut,
    ConversationSummary,
    CorrectionOut,
    MessageOut,
    OperatorConversationOut,
    RatingOut,
)
from feedback.models import Conversation, Correction, Message, Rating


def rating_out(rating: Rating) -> RatingOut:
    thumbs: Literal["up", "down"] | None = None
    if rating.thumbs is not None:
        thumbs = "up" if rating.thumbs > 0 else "down"
    return RatingOut(
        id=rating.id,
        conversation_id=rating.conversation_id,
        message_id=rating.message_id,
        thumbs=thumbs,
        csat=rating.csat,
        comment=rating.comment,
        created_at=rating.created_at,
        updated_at=rating.updated_at,
    )


def conversation_out(
    conversation: Conversation, messages: Sequence[Message], ratings: Sequence[Rating]
) -> ConversationOut:
    return ConversationOut(
        id=conversation.id,
        created_at=conversation.created_at,
        status=conversation.status,
        state=conversation.state,
        handed_off=conversation.handed_off,
        handed_off_at=conversation.handed_off_at,
        messages=[MessageOut.model_validate(m) for m in messages],
        ratings=[rating_out(r) for r in ratings],
    )


def operator_conversation_out(
    conversation: Conversation,
    messages: Sequence[Message],
    ratings: Sequence[Rating],
    corrections: Sequence[Correction],
) -> OperatorConversationOut:
    base = conversation_out(conversation, messages, ratings)
    return OperatorConversationOut(
        **base.model_dump(),
        site=conversation.site,
        locale=conversation.locale,
        handoff_reason=conversation.handoff_reason,
        assigned_operator_id=conversation.assigned_operator_id,
        corrections=[CorrectionOut.model_validate(c) for c in corrections],
    )


def conversation_summary(conversation: Conversation) -> ConversationSummary:
    messages = conversation.messages
    return ConversationSummary(
        id=conversation.id,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        status=conversation.status,
        handed_off=conversation.handed_off,
        message_count=conversation.message_count,
        last_message=messages[-1].text[:200] if messages else None,
        intents=sorted({m.intent for m in messages if m.intent}),
        model_versions=sorted({m.model_version for m in messages if m.model_version}),
    )
