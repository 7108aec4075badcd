"""The monitor tick and the schedule on the worker side, and sending runs to the workers.

A run is a database row first; its Celery task is only a notice to execute it. So the tick
sends the task of every active run that was never sent (the API's trigger only writes the row)
and of every run whose task may have been lost (sent long ago, no heartbeat since), e.g. after
a broker restart without persistence. A duplicate notice is harmless: the run's lease lets one
task execute it and the others find it held or finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from distill_worker.loop.context import LoopContext
from feedback.aliases import apply_canary_decision, publish
from feedback.canary import check_canary
from feedback.db import session_scope
from feedback.models import RunTrigger, utcnow
from feedback.monitor_gauges import MonitorGauges
from feedback.monitor_loop import tick
from feedback.repositories.runs import RunRepository

Send = Callable[[uuid.UUID], str]  # run id -> task id


def monitor_tick(
    ctx: LoopContext, send: Send, gauges: MonitorGauges | None = None
) -> dict[str, Any]:
    with session_scope(ctx.sessions()) as session:
        result = tick(session, ctx.settings.monitor, ctx.run_config, gauges=gauges)
        summary: dict[str, Any] = {
            "evaluations": [
                {"model_version": e.model_version, "decision": e.decision, "reason": e.reason}
                for e in result.evaluations
            ],
            "opened": str(result.opened.id) if result.opened else None,
        }
    summary["canary"] = canary_check(ctx)
    summary["dispatched"] = dispatch_pending(ctx, send)
    return summary


def canary_check(ctx: LoopContext) -> dict[str, Any]:
    """Judge the running canary (if any): roll it back when its live figures fell below the
    champion's, promote it when it held up; the API processes hear of a move once it commits."""
    with session_scope(ctx.sessions()) as session:
        decision = check_canary(session, ctx.settings)
        moved = apply_canary_decision(session, decision)
    if moved is not None:
        publish(ctx.settings, moved)
    return {
        "action": decision.action,
        "reason": decision.reason,
        "moved": moved.alias if moved else None,
    }


def scheduled_run(ctx: LoopContext, send: Send) -> dict[str, Any]:
    """The schedule's incremental run (none when a run is active), then dispatching."""
    with session_scope(ctx.sessions()) as session:
        run = RunRepository(session).open_run(
            RunTrigger.SCHEDULE.value,
            {"cron": ctx.settings.monitor.schedule_cron},
            ctx.run_config(RunTrigger.SCHEDULE),
        )
        opened = str(run.id) if run is not None else None
    return {"opened": opened, "dispatched": dispatch_pending(ctx, send)}


def dispatch_pending(ctx: LoopContext, send: Send) -> list[str]:
    with session_scope(ctx.sessions()) as session:
        pending = RunRepository(session).to_dispatch(
            now=utcnow(), redispatch_after_s=ctx.settings.worker.redispatch_after_s
        )
        ids = [run.id for run in pending]
    sent = []
    for run_id in ids:
        task_id = send(run_id)
        with session_scope(ctx.sessions()) as session:
            repo = RunRepository(session)
            repo.mark_dispatched(repo.get(run_id), task_id)
        sent.append(str(run_id))
    return sent
