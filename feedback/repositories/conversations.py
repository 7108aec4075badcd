"""Conversations and messages: create, append (redacted), read after a cursor, and search for
operators. Who has a conversation changes only in `feedback.handoff`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from feedback.errors import Conflict, NotFound
from feedback.models import (
    Conversation,
    ConversationStatus,
    Correction,
    Message,
    MessageRole,
    Rating,
    utcnow,
)
from feedback.redaction import redact_text

_S = TypeVar("_S", bound=Select[Any])


@dataclass(frozen=True)
class ConversationFilter:
    """Operator search over conversations; every field is optional and they combine with AND."""

    rating: str | None = None  # "down" | "up" | "low_csat" | "rated" | "unrated"
    intent: str | None = None
    handed_off: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    model_version: str | None = None
    query: str | None = None
    status: str | None = None


class ConversationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, *, site: str | None = None, locale: str | None = None) -> Conversation:
        """A new open conversation; ``site`` and ``locale`` come from the widget, so a customer
        can type anything into them: they are PII-redacted like message text (and cut to their
        columns' sizes, which a placeholder longer than what it replaced could overrun)."""
        conversation = Conversation(
            site=redact_text(site)[:200] if site else site,
            locale=redact_text(locale)[:35] if locale else locale,
            status=ConversationStatus.OPEN.value,
            handed_off=False,
            message_count=0,
        )
        self.session.add(conversation)
        self.session.flush()
        return conversation

    def get(self, conversation_id: uuid.UUID) -> Conversation:
        conversation = self.session.get(Conversation, conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return conversation

    def get_message(self, message_id: uuid.UUID) -> Message:
        message = self.session.get(Message, message_id)
        if message is None:
            raise NotFound(f"message {message_id} does not exist")
        return message

    def messages(self, conversation_id: uuid.UUID) -> Sequence[Message]:
        return self.session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        ).all()

    def messages_after(
        self, conversation_id: uuid.UUID, after_seq: int, *, limit: int = 200
    ) -> Sequence[Message]:
        """The messages numbered after `after_seq` (a live stream's cursor), in order."""
        return self.session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
            .order_by(Message.seq)
            .limit(limit)
        ).all()

    def add_message(
        self,
        conversation: Conversation,
        *,
        role: MessageRole,
        text: str,
        intent: str | None = None,
        intent_confidence: float | None = None,
        reward_score: float | None = None,
        model_version: str | None = None,
        latency_ms: float | None = None,
        handoff: bool = False,
    ) -> Message:
        """Append a message; its text is PII-redacted here, before it reaches the database."""
        if conversation.status == ConversationStatus.CLOSED.value:
            raise Conflict("this conversation is closed; start a new conversation to write again")
        fields = {
            "intent": intent,
            "intent_confidence": intent_confidence,
            "reward_score": reward_score,
            "model_version": model_version,
            "latency_ms": latency_ms,
            "handoff": handoff,
        }
        message = self._append(conversation.id, role, text, fields, to_the_bot_only=False)
        assert message is not None  # unconditional
        self.session.refresh(conversation, ["message_count", "updated_at"])
        return message

    def add_reply_unless_handed_off(
        self,
        conversation_id: uuid.UUID,
        *,
        text: str,
        intent: str | None,
        intent_confidence: float | None,
        reward_score: float | None,
        model_version: str | None,
        latency_ms: float | None,
        handoff: bool,
        reply_source: str,
        guard_reason: str | None,
    ) -> Message | None:
        """The assistant's reply, unless the conversation went to a human (or was closed) first.

        The conditional counter update both checks the flag and holds the row (PostgreSQL's row
        lock; on SQLite the transaction holds the write lock from its start) until commit, so a
        concurrent handoff lands before it (None: nothing stored) or after it, never between
        the check and the write."""
        fields = {
            "intent": intent,
            "intent_confidence": intent_confidence,
            "reward_score": reward_score,
            "model_version": model_version,
            "latency_ms": latency_ms,
            "handoff": handoff,
            "reply_source": reply_source,
            "guard_reason": guard_reason,
        }
        return self._append(
            conversation_id, MessageRole.ASSISTANT, text, fields, to_the_bot_only=True
        )

    def _append(
        self,
        conversation_id: uuid.UUID,
        role: MessageRole,
        text: str,
        fields: dict[str, Any],
        *,
        to_the_bot_only: bool,
    ) -> Message | None:
        """Take the next sequence number with one atomic counter update (concurrent writers get
        distinct numbers) and store the message. `to_the_bot_only`: only while the conversation
        is open and not handed off (None otherwise)."""
        where = [Conversation.id == conversation_id]
        if to_the_bot_only:
            where += [
                Conversation.handed_off.is_(False),
                Conversation.status == ConversationStatus.OPEN.value,
            ]
        seq = self.session.execute(
            update(Conversation)
            .where(*where)
            .values(message_count=Conversation.message_count + 1, updated_at=utcnow())
            .returning(Conversation.message_count)
        ).scalar_one_or_none()
        if seq is None:
            return None
        message = Message(
            conversation_id=conversation_id,
            seq=seq,
            role=role.value,
            text=redact_text(text),
            **fields,
        )
        self.session.add(message)
        self.session.flush()
        return message

    def close(self, conversation: Conversation) -> None:
        conversation.status = ConversationStatus.CLOSED.value
        self.session.flush()

    def search(
        self, filters: ConversationFilter, *, limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[Conversation], int]:
        """Conversations matching the filters, newest first, and the total count."""
        stmt = self._filtered(select(Conversation), filters)
        total = self.session.scalar(self._filtered(select(func.count(Conversation.id)), filters))
        rows = self.session.scalars(
            stmt.options(selectinload(Conversation.messages))
            .order_by(Conversation.created_at.desc(), Conversation.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return rows, int(total or 0)

    def _filtered(self, stmt: _S, filters: ConversationFilter) -> _S:
        c = Conversation
        if filters.handed_off is not None:
            stmt = stmt.where(c.handed_off.is_(filters.handed_off))
        if filters.status is not None:
            stmt = stmt.where(c.status == filters.status)
        if filters.since is not None:
            stmt = stmt.where(c.created_at >= filters.since)
        if filters.until is not None:
            stmt = stmt.where(c.created_at < filters.until)
        if filters.intent is not None:
            # A label counts only while it is the newest label of its message.
            newer = aliased(Correction)
            superseded = (
                exists()
                .where(
                    newer.message_id == Correction.message_id,
                    newer.corrected_intent.is_not(None),
                    newer.created_at > Correction.created_at,
                )
                .correlate(Correction)
            )
            corrected = exists().where(
                Correction.conversation_id == c.id,
                Correction.corrected_intent == filters.intent,
                ~superseded,
            )
            predicted = exists().where(
                Message.conversation_id == c.id, Message.intent == filters.intent
            )
            stmt = stmt.where(or_(predicted, corrected))
        if filters.model_version is not None:
            stmt = stmt.where(
                exists().where(
                    Message.conversation_id == c.id, Message.model_version == filters.model_version
                )
            )
        if filters.query:
            pattern = (
                "%"
                + filters.query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            stmt = stmt.where(
                exists().where(
                    Message.conversation_id == c.id, Message.text.ilike(pattern, escape="\\")
                )
            )
        if filters.rating is not None:
            rated = Rating.conversation_id == c.id
            condition = {
                "down": exists().where(rated, Rating.thumbs == -1),
                "up": exists().where(rated, Rating.thumbs == 1),
                "low_csat": exists().where(rated, Rating.csat <= 2),
                "rated": exists().where(rated),
                "unrated": ~exists().where(rated),
            }[filters.rating]
            stmt = stmt.where(condition)
        return stmt
