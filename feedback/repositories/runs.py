"""Distillation runs: open one (at most one active, enforced by the database), read them,
cancel one, and the worker's side: claim a run under a lease, checkpoint its steps, finish it.

Opening never checks first and then inserts: it inserts inside a savepoint and treats the
unique `active_slot` violation as "a run is already active", so concurrent openers (monitor
ticks, the schedule, an admin) get exactly one run between them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedback.errors import Conflict, InvalidInput, NotFound
from feedback.models import ACTIVE_RUN_STATUSES, DistillRun, RunStatus, RunTrigger, utcnow
from feedback.repositories.audit import redacted_details


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def list(self, *, limit: int = 50, status: str | None = None) -> Sequence[DistillRun]:
        stmt = select(DistillRun).order_by(DistillRun.created_at.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(DistillRun.status == status)
        return self.session.scalars(stmt).all()

    def get(self, run_id: uuid.UUID, *, for_update: bool = False) -> DistillRun:
        run = self.session.get(
            DistillRun, run_id, with_for_update=for_update, populate_existing=for_update
        )
        if run is None:
            raise NotFound(f"distillation run {run_id} does not exist")
        return run

    def active(self) -> DistillRun | None:
        return self.session.scalar(select(DistillRun).where(DistillRun.active_slot == 1))

    def open_run(
        self, trigger: str, detail: dict[str, Any], config: dict[str, Any]
    ) -> DistillRun | None:
        """A new queued run, or None when a run is already active (the unique slot said so)."""
        try:
            RunTrigger(trigger)
        except ValueError:
            raise InvalidInput(
                f"unknown run trigger {trigger!r}; use one of {[t.value for t in RunTrigger]}"
            ) from None
        # An admin's typed reason travels in the detail: redacted like the audit log's copy.
        run = DistillRun(trigger=trigger, trigger_detail=redacted_details(detail), config=config)
        try:
            with self.session.begin_nested():
                self.session.add(run)
                self.session.flush()
        except IntegrityError as exc:
            if "active_slot" not in str(exc.orig):
                raise
            return None
        return run

    def cancel(self, run_id: uuid.UUID) -> DistillRun:
        """Mark a queued or running run cancelled (its slot frees at once); a worker executing
        it loses its lease with it and stops at its next checkpoint or heartbeat."""
        run = self.get(run_id, for_update=True)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise Conflict(
                f"run {run_id} is already {run.status}; only queued or running runs can be "
                "cancelled"
            )
        run.cancel_requested = True
        run.status = RunStatus.CANCELLED.value
        run.finished_at = utcnow()
        self.session.flush()
        return run

    # --- delivery ---------------------------------------------------------------------------

    def to_dispatch(self, *, now: dt.datetime, redispatch_after_s: float) -> Sequence[DistillRun]:
        """Active runs whose task must be sent: never sent, or sent long ago and not alive
        (no heartbeat since `redispatch_after_s`; the message may have been lost)."""
        stale = now - dt.timedelta(seconds=redispatch_after_s)
        return self.session.scalars(
            select(DistillRun)
            .where(DistillRun.active_slot == 1)
            .where(
                or_(
                    DistillRun.dispatched_at.is_(None),
                    (DistillRun.dispatched_at < stale)
                    & or_(DistillRun.heartbeat_at.is_(None), DistillRun.heartbeat_at < stale),
                )
            )
        ).all()

    def mark_dispatched(self, run: DistillRun, task_id: str) -> None:
        run.task_id = task_id
        run.dispatched_at = utcnow()
        self.session.flush()

    # --- the executing worker -----------------------------------------------------------------

    def claim(self, run_id: uuid.UUID, owner: str, *, lease_s: float) -> DistillRun | None:
        """Take the run's lease: None if the run is finished, or another live task holds it."""
        run = self.get(run_id, for_update=True)
        if run.status not in ACTIVE_RUN_STATUSES:
            return None
        now = utcnow()
        alive = run.heartbeat_at is not None and (now - run.heartbeat_at).total_seconds() < lease_s
        if run.lease_owner not in (None, owner) and alive:
            return None
        run.lease_owner = owner
        run.heartbeat_at = now
        run.attempts += 1
        run.status = RunStatus.RUNNING.value
        if run.started_at is None:
            run.started_at = now
        self.session.flush()
        return run

    def heartbeat(self, run_id: uuid.UUID, owner: str) -> bool:
        """Renew the lease; False when it is lost (the run was cancelled, finished or taken
        over): the executing task must stop."""
        result = self.session.execute(
            update(DistillRun)
            .where(DistillRun.id == run_id, DistillRun.lease_owner == owner)
            .where(DistillRun.active_slot == 1, DistillRun.cancel_requested.is_(False))
            .values(heartbeat_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))

    def holds(self, run: DistillRun, owner: str) -> bool:
        """Re-read the run under a row lock: whether `owner` still holds its lease."""
        self.session.refresh(run, with_for_update=True)
        return run.active_slot == 1 and run.lease_owner == owner and not run.cancel_requested

    def set_stage(
        self, run_id: uuid.UUID, owner: str, stage: str, progress: float | None = None
    ) -> None:
        """Show where the owner's run is (the dashboard's stage and progress bar)."""
        values: dict[str, Any] = {"stage": stage[:40]}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        self.session.execute(
            update(DistillRun)
            .where(DistillRun.id == run_id, DistillRun.lease_owner == owner)
            .values(**values)
        )

    def release(self, run_id: uuid.UUID, owner: str, *, retry_in_s: float = 0.0) -> None:
        """Give the lease up, a retry being sent that starts in `retry_in_s`: the next delivery
        claims it at once. The run counts as dispatched when the retry is due, so `to_dispatch`
        resends it only if the retry has not begun `redispatch_after_s` after that (a resend
        while it waits would run a second chain of retries beside the first)."""
        if retry_in_s < 0:
            raise ValueError("retry_in_s must not be negative")
        self.session.execute(
            update(DistillRun)
            .where(DistillRun.id == run_id, DistillRun.lease_owner == owner)
            .values(
                lease_owner=None,
                heartbeat_at=None,
                dispatched_at=utcnow() + dt.timedelta(seconds=retry_in_s),
            )
        )

    def save_step(
        self,
        run: DistillRun,
        name: str,
        output: dict[str, Any],
        *,
        progress: float,
    ) -> None:
        """Checkpoint a finished step: a redelivered task skips it and reuses `output`."""
        steps = dict(run.steps or {})
        steps[name] = {"done": True, "at": utcnow().isoformat(), **output}
        run.steps = steps
        run.progress = max(0.0, min(1.0, progress))
        self.session.flush()

    def finish(
        self,
        run: DistillRun,
        status: RunStatus,
        *,
        error: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        run.status = status.value
        run.finished_at = utcnow()
        run.lease_owner = None
        if status is RunStatus.SUCCEEDED:
            run.progress = 1.0
        if error is not None:
            run.error = error[:4000]
        if metrics is not None:
            run.metrics = {**(run.metrics or {}), **metrics}
        self.session.flush()
