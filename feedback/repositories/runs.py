"""Reading distillation runs, and cancelling one that has not finished."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.errors import Conflict, NotFound
from feedback.models import ACTIVE_RUN_STATUSES, DistillRun, RunStatus, utcnow


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def list(self, *, limit: int = 50, status: str | None = None) -> Sequence[DistillRun]:
        stmt = select(DistillRun).order_by(DistillRun.created_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(DistillRun.status == status)
        return self.session.scalars(stmt).all()

    def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> DistillRun:
        run = self.session.get(DistillRun, run_id, with_for_update=for_update)
        if run is None:
            raise NotFound(f"distillation run {run_id} does not exist")
        return run

    def cancel(self, run_id: uuid.UUID) -> DistillRun:
        """Mark a queued or running run cancelled; its worker stops at its next checkpoint."""
        run = self.get(run_id, for_update=True)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise Conflict(
                f"run {run_id} is already {run.status}; only queued or running runs can be "
                "cancelled"
            )
        run.status = RunStatus.CANCELLED.value
        run.finished_at = utcnow()
        self.session.flush()
        return run
