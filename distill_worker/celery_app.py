"""The Celery app, built from the settings (never at import time).

Broker: Redis when `redis.url` is set (results there too); otherwise kombu's SQLAlchemy
transport on the store's own database (the embedded SQLite file), no result backend (the run
rows are the results). Queues: `distill` (runs: late acks, prefetch 1, one at a time per worker
process, time limits, a visibility timeout longer than the longest run) and `default` (monitor
ticks, the schedule). Beat sends the monitor tick every `monitor.tick_seconds` and the
scheduled incremental run on `monitor.schedule_cron`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu import Queue  # type: ignore[attr-defined]

from distill_worker.loop.context import LoopContext
from feedback.settings import Settings

DISTILL_QUEUE, DEFAULT_QUEUE = "distill", "default"
EXECUTE_RUN = "chatdistill.execute_run"
MONITOR_TICK = "chatdistill.monitor_tick"
SCHEDULED_RUN = "chatdistill.scheduled_run"


def broker_url(settings: Settings) -> str:
    if settings.redis.url:
        return settings.redis.url
    return "sqla+" + settings.database_url


def make_celery(settings: Settings) -> Celery:
    worker = settings.worker
    app = Celery("chatdistill", include=["distill_worker.tasks"])
    conf: dict[str, Any] = {
        "broker_url": broker_url(settings),
        "result_backend": settings.redis.url or None,
        "task_ignore_result": not settings.redis.url,
        "result_expires": 7 * 24 * 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_queues": (Queue(DISTILL_QUEUE), Queue(DEFAULT_QUEUE)),  # type: ignore[no-untyped-call]
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {EXECUTE_RUN: {"queue": DISTILL_QUEUE}},
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": worker.concurrency,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        "beat_schedule": beat_schedule(settings),
    }
    if settings.redis.url:
        conf["broker_transport_options"] = {"visibility_timeout": worker.visibility_timeout_s}
        conf["result_backend_transport_options"] = {
            "visibility_timeout": worker.visibility_timeout_s
        }
    else:
        # The SQLAlchemy transport takes its polling interval from the class; passing it in
        # broker_transport_options crashes the worker.
        from kombu.transport import sqlalchemy as sqla

        sqla.Transport.polling_interval = worker.sqla_polling_interval_s
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.update(conf)
    app.chatdistill = LoopContext(settings)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {
        "monitor-tick": {
            "task": MONITOR_TICK,
            "schedule": settings.monitor.tick_seconds,
            "options": {"queue": DEFAULT_QUEUE, "expires": settings.monitor.tick_seconds},
        }
    }
    cron = settings.monitor.schedule_cron
    if cron:
        minute, hour, day_of_month, month, day_of_week = cron.split()
        schedule["scheduled-run"] = {
            "task": SCHEDULED_RUN,
            "schedule": crontab(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month,
                day_of_week=day_of_week,
            ),
            "options": {"queue": DEFAULT_QUEUE},
        }
    return schedule


def context_of(app: Celery) -> LoopContext:
    ctx = getattr(app, "chatdistill", None)
    if not isinstance(ctx, LoopContext):
        raise RuntimeError(
            "this Celery app was not built by distill_worker.celery_app.make_celery; start the "
            "worker with `chatdistill worker`"
        )
    return ctx
