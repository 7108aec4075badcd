"""The Celery tasks: thin shells that take ids, call `distill_worker.loop`, and map its
outcomes onto Celery's retry and acknowledgement."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from celery import Celery, Task, shared_task

from distill_worker.celery_app import (
    DISTILL_QUEUE,
    EXECUTE_RUN,
    MONITOR_TICK,
    SCHEDULED_RUN,
    context_of,
)
from distill_worker.loop import dispatch, executor
from distill_worker.loop.context import LoopContext
from distill_worker.loop.errors import RetryableRunError
from feedback.monitor_gauges import MonitorGauges

logger = logging.getLogger(__name__)
MAX_BACKOFF_S = 1800.0


def send_run(app: Celery, run_id: uuid.UUID) -> str:
    """Send a run's task to the `distill` queue (with the run time limits) -> the task id."""
    worker = context_of(app).settings.worker
    result = app.send_task(
        EXECUTE_RUN,
        args=[str(run_id)],
        queue=DISTILL_QUEUE,
        soft_time_limit=worker.run_soft_time_limit_s,
        time_limit=worker.run_time_limit_s,
    )
    return str(result.id)


@shared_task(name=MONITOR_TICK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def monitor_tick(self: Task) -> dict[str, Any]:
    ctx = context_of(self.app)
    summary = dispatch.monitor_tick(ctx, lambda run_id: send_run(self.app, run_id), _gauges(ctx))
    logger.info("monitor tick: %s", summary)
    return summary


@shared_task(name=SCHEDULED_RUN, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def scheduled_run(self: Task) -> dict[str, Any]:
    ctx = context_of(self.app)
    summary = dispatch.scheduled_run(ctx, lambda run_id: send_run(self.app, run_id))
    logger.info("scheduled run: %s", summary)
    return summary


@shared_task(  # type: ignore[untyped-decorator]
    name=EXECUTE_RUN, bind=True, acks_late=True, reject_on_worker_lost=True
)
def execute_run(self: Task, run_id: str, teacher_retries: int = 0) -> str:
    ctx = context_of(self.app)
    worker = ctx.settings.worker
    run = uuid.UUID(run_id)
    owner = f"{socket.gethostname()}:{os.getpid()}:{self.request.id}"
    countdown = min(worker.retry_backoff_s * 2**teacher_retries, MAX_BACKOFF_S)
    try:
        outcome = executor.execute(ctx, run, owner, retry_in_s=countdown)
    except RetryableRunError as exc:
        if teacher_retries >= worker.max_retries:
            reason = f"{exc} (gave up after {teacher_retries} retries)"
            executor.fail(ctx, run, reason)
            logger.warning("run %s failed: %s", run_id, reason)
            return "failed"
        logger.warning(
            "run %s: %s; retry %d in %.0f s", run_id, exc, teacher_retries + 1, countdown
        )
        raise self.retry(
            args=[run_id],
            kwargs={"teacher_retries": teacher_retries + 1},
            countdown=countdown,
            max_retries=None,
        ) from exc
    if outcome == "busy":  # another live delivery holds the run: look again after its lease
        raise self.retry(
            args=[run_id],
            kwargs={"teacher_retries": teacher_retries},
            countdown=worker.lease_s,
            max_retries=None,
        )
    logger.info("run %s: %s", run_id, outcome)
    return outcome


def _gauges(ctx: LoopContext) -> MonitorGauges | None:
    """The process's monitor gauges, served on `worker.metrics_port` when it is set."""
    port = ctx.settings.worker.metrics_port
    if port is None:
        return None
    gauges = getattr(ctx, "gauges", None)
    if gauges is None:
        from prometheus_client import CollectorRegistry, start_http_server

        gauges = MonitorGauges(CollectorRegistry())
        try:
            start_http_server(port, addr=ctx.settings.worker.metrics_host, registry=gauges.registry)
        except OSError as exc:
            logger.warning("monitor gauges not served on port %d: %s", port, exc)
        ctx.gauges = gauges  # type: ignore[attr-defined]
    return gauges
