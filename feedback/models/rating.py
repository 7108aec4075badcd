"""Customer ratings: thumbs and 1-5 CSAT on a reply, or CSAT on a whole conversation.

One rating per rated thing: rating the same reply again (or answering the conversation's CSAT
question again) replaces the earlier rating. A reply rating has `message_id`; a conversation's
CSAT has `message_id` NULL and is unique per conversation through a partial index.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("thumbs IS NULL OR thumbs IN (-1, 1)", name="thumbs_value"),
        CheckConstraint("csat IS NULL OR (csat >= 1 AND csat <= 5)", name="csat_range"),
        CheckConstraint("thumbs IS NOT NULL OR csat IS NOT NULL", name="has_value"),
        CheckConstraint("message_id IS NOT NULL OR thumbs IS NULL", name="thumbs_need_message"),
        Index("uq_ratings_message_id", "message_id", unique=True),
        Index(
            "uq_ratings_conversation_csat",
            "conversation_id",
            unique=True,
            postgresql_where=text("message_id IS NULL"),
            sqlite_where=text("message_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    thumbs: Mapped[int | None] = mapped_column(SmallInteger)
    csat: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
