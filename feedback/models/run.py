"""Distillation runs: what started them, their config, where they are, and how they ended.

At most one run is active at a time. The database enforces it: an active run holds
`active_slot = 1`, which is unique; finished runs hold NULL (NULLs never collide).

A run executes as steps (snapshot, train, evaluate, register, promote); `steps` keeps each
step's result once it is done, so a redelivered task skips what is done. The executing task
holds a lease (`lease_owner`, renewed in `heartbeat_at`); a redelivery takes over only a
lease that has gone stale, so two deliveries never train the same run at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from feedback.models.base import Base, UTCDateTime, utcnow


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class RunTrigger(enum.StrEnum):
    MANUAL = "manual"
    ACCURACY = "accuracy"
    LATENCY = "latency"
    SCHEDULE = "schedule"
    CLI = "cli"


class DistillRun(Base):
    __tablename__ = "distill_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint(
            "trigger IN ('manual', 'accuracy', 'latency', 'schedule', 'cli')", name="trigger"
        ),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint(
            "(active_slot IS NULL) = (status NOT IN ('queued', 'running'))", name="active_slot"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED.value, index=True)
    active_slot: Mapped[int | None] = mapped_column(SmallInteger, unique=True)
    stage: Mapped[str | None] = mapped_column(String(40))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    candidate_version_id: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The continual loop (migration 0004): step checkpoints, delivery and lease.
    steps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("status", RunStatus.QUEUED.value)
        kwargs.setdefault("steps", {})
        kwargs.setdefault("attempts", 0)
        kwargs.setdefault("cancel_requested", False)
        super().__init__(**kwargs)

    @validates("status")
    def _hold_active_slot(self, _key: str, status: str) -> str:
        """Keep `active_slot` in step with the status: 1 while queued or running, else NULL."""
        self.active_slot = 1 if status in ACTIVE_RUN_STATUSES else None
        return status
