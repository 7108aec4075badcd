"""The monitor's reads and writes: window starts, versions seen, evaluations recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from feedback.models import Message, MessageRole, MonitorDecision, MonitorEvaluation, Rating

# Any constant works; every process that ticks takes the same one.
_TICK_LOCK_KEY = 0x6368_6174_6D6F_6E  # "chatmon"


class MonitorRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_tick(self) -> None:
        """Serialise ticks for this transaction (PostgreSQL advisory lock; SQLite has one
        writer at a time anyway), so two ticks never read the same hysteresis state."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TICK_LOCK_KEY})

    def nth_rated_reply_at(
        self, model_version: str, n: int, until: dt.datetime
    ) -> dt.datetime | None:
        """When the n-th newest rated reply of the version was written (None: fewer than n)."""
        return self.session.scalar(
            select(Message.created_at)
            .join(Rating, Rating.message_id == Message.id)
            .where(Message.role == MessageRole.ASSISTANT.value)
            .where(Message.model_version == model_version, Message.created_at < until)
            .where(or_(Rating.thumbs.is_not(None), Rating.csat.is_not(None)))
            .order_by(Message.created_at.desc())
            .offset(n - 1)
            .limit(1)
        )

    def versions_replying(self, since: dt.datetime, until: dt.datetime, limit: int) -> list[str]:
        """Model versions that wrote replies in [since, until), busiest first."""
        rows = self.session.execute(
            select(Message.model_version, func.count())
            .where(Message.role == MessageRole.ASSISTANT.value)
            .where(Message.model_version.is_not(None))
            .where(Message.created_at >= since, Message.created_at < until)
            .group_by(Message.model_version)
            .order_by(func.count().desc())
            .limit(limit)
        ).all()
        return [str(version) for version, _ in rows]

    def latest(self, model_version: str) -> MonitorEvaluation | None:
        return self.session.scalar(
            select(MonitorEvaluation)
            .where(MonitorEvaluation.model_version == model_version)
            .order_by(MonitorEvaluation.id.desc())
            .limit(1)
        )

    def last_opened_at(self) -> dt.datetime | None:
        return self.session.scalar(
            select(func.max(MonitorEvaluation.at)).where(
                MonitorEvaluation.decision == MonitorDecision.OPENED_RUN.value
            )
        )

    def record(self, evaluation: MonitorEvaluation) -> MonitorEvaluation:
        self.session.add(evaluation)
        self.session.flush()
        return evaluation

    def recent(
        self, *, limit: int = 100, model_version: str | None = None
    ) -> Sequence[MonitorEvaluation]:
        stmt = select(MonitorEvaluation).order_by(MonitorEvaluation.id.desc()).limit(limit)
        if model_version is not None:
            stmt = stmt.where(MonitorEvaluation.model_version == model_version)
        return self.session.scalars(stmt).all()
