"""Ratings and operator corrections. A new rating of the same thing replaces the earlier one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, TextClause, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedback.errors import Conflict, InvalidInput
from feedback.models import Conversation, Correction, Message, MessageRole, Rating, utcnow
from feedback.redaction import redact_text


class RatingRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def rate_message(
        self,
        message: Message,
        *,
        thumbs: int | None,
        csat: int | None = None,
        comment: str | None = None,
    ) -> Rating:
        """Rate an assistant reply with thumbs (+1/-1) and/or CSAT 1-5; replaces a prior rating."""
        if message.role != MessageRole.ASSISTANT.value:
            raise Conflict(
                "only assistant replies can be rated; pick a message with role assistant"
            )
        _check_values(thumbs, csat)
        values = {
            "conversation_id": message.conversation_id,
            "message_id": message.id,
            "thumbs": thumbs,
            "csat": csat,
            "comment": redact_text(comment) if comment else None,
        }
        return self._upsert(values, ["message_id"], None)

    def rate_conversation(
        self, conversation: Conversation, *, csat: int, comment: str | None = None
    ) -> Rating:
        """The conversation's CSAT answer (1-5); replaces an earlier answer."""
        _check_values(None, csat)
        values = {
            "conversation_id": conversation.id,
            "message_id": None,
            "thumbs": None,
            "csat": csat,
            "comment": redact_text(comment) if comment else None,
        }
        return self._upsert(values, ["conversation_id"], text("message_id IS NULL"))

    def for_conversation(self, conversation_id: uuid.UUID) -> Sequence[Rating]:
        return self.session.scalars(
            select(Rating).where(Rating.conversation_id == conversation_id)
        ).all()

    def _upsert(
        self,
        values: dict[str, Any],
        index_elements: list[str],
        index_where: ColumnElement[bool] | TextClause | None,
    ) -> Rating:
        now = utcnow()
        row = {"id": uuid.uuid4(), "created_at": now, "updated_at": now, **values}
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(Rating).values(**row)
        upsert = stmt.on_conflict_do_update(
            index_elements=index_elements,
            index_where=index_where,
            set_={
                "thumbs": stmt.excluded.thumbs,
                "csat": stmt.excluded.csat,
                "comment": stmt.excluded.comment,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(Rating.id)
        rating_id = self.session.execute(upsert).scalar_one()
        rating = self.session.get(Rating, rating_id, populate_existing=True)
        assert rating is not None
        return rating


class CorrectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        message: Message,
        *,
        operator_id: uuid.UUID | None,
        corrected_text: str | None = None,
        corrected_intent: str | None = None,
        exclude_from_training: bool = False,
        note: str | None = None,
    ) -> Correction:
        if corrected_text is None and corrected_intent is None and not exclude_from_training:
            raise InvalidInput(
                "a correction needs a corrected reply, an intent label, or exclude_from_training"
            )
        if corrected_text is not None and message.role != MessageRole.ASSISTANT.value:
            raise Conflict(
                "only assistant replies can be corrected; label customer messages instead"
            )
        correction = Correction(
            message_id=message.id,
            conversation_id=message.conversation_id,
            operator_id=operator_id,
            corrected_text=redact_text(corrected_text) if corrected_text is not None else None,
            corrected_intent=(  # a label an operator types: redacted, cut to its column
                redact_text(corrected_intent)[:120] if corrected_intent is not None else None
            ),
            exclude_from_training=exclude_from_training,
            note=redact_text(note) if note else None,
        )
        self.session.add(correction)
        self.session.flush()
        return correction

    def for_conversation(self, conversation_id: uuid.UUID) -> Sequence[Correction]:
        return self.session.scalars(
            select(Correction)
            .where(Correction.conversation_id == conversation_id)
            .order_by(Correction.created_at)
        ).all()


def _check_values(thumbs: int | None, csat: int | None) -> None:
    if thumbs is None and csat is None:
        raise InvalidInput("give thumbs (+1 or -1) and/or csat (1 to 5)")
    if thumbs is not None and thumbs not in (-1, 1):
        raise InvalidInput("thumbs must be +1 (up) or -1 (down)")
    if csat is not None and not 1 <= csat <= 5:
        raise InvalidInput("csat must be an integer from 1 to 5")
