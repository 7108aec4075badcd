"""Execute one run: claim its lease, do the steps not yet checkpointed, finish it once.

    claim -> [snapshot -> train -> evaluate -> register -> promote] -> succeeded
                                        \\-> gate refused: failed, champion keeps serving

Outcomes: "succeeded", "refused", "failed", "cancelled", "lost" (another task holds the run),
"finished" (a redelivery of a run that had already ended: nothing done) and "busy" (another
live task holds the lease: the caller retries after the lease time). A retryable failure
releases the lease and raises `RetryableRunError` for the caller to retry with backoff (the
delay it passes in keeps the dispatcher from resending the run meanwhile); after the last retry
the caller calls `fail` with the reason.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from distill_worker.loop import steps
from distill_worker.loop.context import LoopContext
from distill_worker.loop.errors import (
    LeaseLost,
    PermanentRunError,
    RetryableRunError,
    RunCancelled,
)
from distill_worker.loop.lease import Lease
from distill_worker.loop.steps import RunState
from feedback.db import session_scope
from feedback.models import RunStatus, RunTrigger
from feedback.repositories.runs import RunRepository

logger = logging.getLogger(__name__)

ORDER = ("snapshot", "train", "evaluate", "register", "promote")


def execute(ctx: LoopContext, run_id: uuid.UUID, owner: str, *, retry_in_s: float = 0.0) -> str:
    """Run what is left of `run_id` as `owner`; `retry_in_s`: when the caller's retry would start
    after a retryable failure (the run is marked as awaiting it, not as lost)."""
    lease_s = ctx.settings.worker.lease_s
    with session_scope(ctx.sessions()) as session:
        repo = RunRepository(session)
        run = repo.get(run_id, for_update=True)
        if run.status not in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
            return "finished"
        if repo.claim(run_id, owner, lease_s=lease_s) is None:
            return "busy"
        if not (run.config or {}).get("distill"):  # opened by the API: the worker's settings
            compression = (run.config or {}).get("kind") == "compression"
            run.config = ctx.run_config(
                RunTrigger.LATENCY if compression else RunTrigger(run.trigger)
            )
        state = RunState(run.id, run.trigger, dict(run.config), dict(run.steps or {}))

    with Lease(ctx, run_id, owner) as lease:
        try:
            return _steps(ctx, state, lease)
        except RunCancelled:
            return "cancelled"
        except LeaseLost:
            return "lost"
        except RetryableRunError:
            _release(ctx, run_id, owner, retry_in_s)
            raise
        except PermanentRunError as exc:
            fail(ctx, run_id, str(exc), owner=owner)
            return "failed"
        except Exception as exc:  # anything unforeseen: a readable failure, not a stuck run
            logger.exception("run %s failed", run_id)
            fail(ctx, run_id, f"{type(exc).__name__}: {exc}", owner=owner)
            return "failed"


def _steps(ctx: LoopContext, state: RunState, lease: Lease) -> str:
    def stage(name: str, progress: float | None = None) -> None:
        with session_scope(ctx.sessions()) as session:
            RunRepository(session).set_stage(state.id, lease.owner, name, progress)

    for index, name in enumerate(ORDER):
        done = state.steps.get(name, {}).get("done")
        if name == "promote" and not state.steps["evaluate"]["passed"]:
            break
        if done:
            continue
        lease.check()
        stage(name)
        output: dict[str, Any]
        try:
            if name == "train":
                output = steps.train(ctx, state, lease, stage)
            else:
                output = getattr(steps, name)(ctx, state, lease)
        except (RunCancelled, LeaseLost, RetryableRunError, PermanentRunError):
            raise
        except SoftTimeLimitExceeded:
            raise PermanentRunError(
                f"{name}: the run exceeded worker.run_soft_time_limit_s "
                f"({ctx.settings.worker.run_soft_time_limit_s} s); raise it or train less"
            ) from None
        except Exception as exc:
            raise PermanentRunError(f"{name}: {type(exc).__name__}: {exc}") from exc
        _checkpoint(ctx, state, lease, name, output, (index + 1) / len(ORDER))

    verdict = state.steps["evaluate"]
    with session_scope(ctx.sessions()) as session:
        repo = RunRepository(session)
        run = repo.get(state.id, for_update=True)
        if not repo.holds(run, lease.owner):
            lease.check()
        metrics = {"gate": verdict, "outcome": "promoted" if verdict["passed"] else "refused"}
        if verdict["passed"]:
            repo.finish(run, RunStatus.SUCCEEDED, metrics=metrics)
            return "succeeded"
        reasons = "; ".join(verdict["reasons"])
        repo.finish(
            run,
            RunStatus.FAILED,
            error=f"the gate refused candidate {run.candidate_version_id}: {reasons}; "
            "the champion keeps serving",
            metrics=metrics,
        )
        return "refused"


def _checkpoint(
    ctx: LoopContext,
    state: RunState,
    lease: Lease,
    name: str,
    output: dict[str, Any],
    progress: float,
) -> None:
    with session_scope(ctx.sessions()) as session:
        repo = RunRepository(session)
        run = repo.get(state.id, for_update=True)
        if not repo.holds(run, lease.owner):
            lease.check()
        repo.save_step(run, name, output, progress=progress)
        state.steps = dict(run.steps)


def _release(ctx: LoopContext, run_id: uuid.UUID, owner: str, retry_in_s: float) -> None:
    with session_scope(ctx.sessions()) as session:
        RunRepository(session).release(run_id, owner, retry_in_s=retry_in_s)


def fail(ctx: LoopContext, run_id: uuid.UUID, reason: str, *, owner: str | None = None) -> None:
    """Mark the run failed with `reason`, unless it has already ended or another task holds it."""
    with session_scope(ctx.sessions()) as session:
        repo = RunRepository(session)
        run = repo.get(run_id, for_update=True)
        if run.active_slot != 1 or (owner is not None and run.lease_owner not in (None, owner)):
            return
        repo.finish(run, RunStatus.FAILED, error=reason)
