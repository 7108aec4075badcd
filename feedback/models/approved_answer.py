"""Approved answers: per intent, the reply the guard sends when a generated one is unfit.

One per intent (unique). Operators set them from a reply or a correction in the dashboard
(audited); a distillation run's bundle seeds one per intent from the data's reference replies
when the intent has none (`source` seed). An operator's answer is never replaced by a seed.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class AnswerSource(enum.StrEnum):
    OPERATOR = "operator"
    SEED = "seed"


class ApprovedAnswer(Base):
    __tablename__ = "approved_answers"
    __table_args__ = (CheckConstraint("source IN ('operator', 'seed')", name="source"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    intent: Mapped[str] = mapped_column(String(120), unique=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    operator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL")
    )
    model_version: Mapped[str | None] = mapped_column(String(120))  # the seeding bundle
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
