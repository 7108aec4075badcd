"""Monitor evaluations: every look the continual loop's monitor took, with its numbers.

One row per model version per tick: the window it looked at, the figures, the thresholds in
force, which figures breached, the hysteresis state after the look (`armed`: a metric that
fired stays disarmed until it recovers past its margin), and what was decided (and the run it
opened, if any). The newest row of a version is also the hysteresis state the next tick reads.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class MonitorDecision(enum.StrEnum):
    NONE = "none"  # every figure within its threshold (or too few samples to say)
    OPENED_RUN = "opened_run"  # a breach (or the schedule) opened a run
    RUN_ACTIVE = "run_active"  # a breach, but a run is already active
    COOLDOWN = "cooldown"  # a breach, but the last monitor run is too recent
    DISARMED = "disarmed"  # a breach of a metric that already fired and has not recovered
    DISABLED = "disabled"  # a breach, but the monitor may not open runs (settings)
    OBSERVED = "observed"  # a breach of a version that is not production (no run for it)


DECISIONS = tuple(d.value for d in MonitorDecision)


class MonitorEvaluation(Base):
    __tablename__ = "monitor_evaluations"
    __table_args__ = (
        CheckConstraint(
            "decision IN (" + ", ".join(f"'{d}'" for d in DECISIONS) + ")", name="decision"
        ),
        Index("ix_monitor_evaluations_version_id", "model_version", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    model_version: Mapped[str] = mapped_column(String(120))
    is_production: Mapped[bool] = mapped_column(default=False)
    window_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    window_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)  # WindowMetrics as JSON
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)  # metric -> bound, margin, kind
    breaches: Mapped[list[str]] = mapped_column(JSON)  # metrics past their threshold
    insufficient: Mapped[list[str]] = mapped_column(JSON)  # metrics with too few samples
    armed: Mapped[dict[str, bool]] = mapped_column(JSON)  # hysteresis state after this look
    decision: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str | None] = mapped_column(String(16))  # accuracy | latency when opened
    reason: Mapped[str] = mapped_column(String(500))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("distill_runs.id", ondelete="SET NULL"), index=True
    )
