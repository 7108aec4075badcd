"""`chatdistill worker` and `chatdistill beat`: the Celery worker and scheduler, on the app
built from the settings. The database must be at the code's migration revision (the embedded
SQLite file is migrated here, as `serve` does).

The one module of distill_worker's commands that starts the Celery app; `loop/` holds the loop's
logic and never imports the app or its tasks."""

from __future__ import annotations

import click

from feedback import migrate
from feedback.db import make_engine
from feedback.errors import SchemaOutOfDate
from feedback.models import RunTrigger
from feedback.settings import Settings


def _ready_settings() -> Settings:
    settings = Settings()
    engine = make_engine(settings)
    try:
        if settings.database_url.startswith("sqlite"):
            migrate.upgrade(engine)
        migrate.require_head(engine)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    from distill_worker.loop.context import LoopContext

    for trigger in RunTrigger:  # a bad worker.distill / worker.compression fails here, not later
        try:
            LoopContext(settings).run_config(trigger)
        except ValueError as exc:
            raise click.ClickException(f"worker.distill / worker.compression: {exc}") from None
    return settings


@click.command()
@click.option("--queues", default="distill,default", show_default=True, help="Queues to consume.")
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Default: worker.concurrency (+1 for ticks when taking both queues).",
)
@click.option("--hostname", default=None, help="Worker node name (default: celery@<host>).")
@click.option("--beat", "embed_beat", is_flag=True, help="Run the scheduler in this worker too.")
@click.option("--loglevel", default=None, help="Default: the settings' log_level.")
def worker(
    queues: str,
    concurrency: int | None,
    hostname: str | None,
    embed_beat: bool,
    loglevel: str | None,
) -> None:
    """Run a distillation worker (Celery): runs from `distill`, ticks from `default`."""
    from distill_worker.celery_app import make_celery

    settings = _ready_settings()
    app = make_celery(settings)
    if concurrency is None:
        # A process for runs, and one more for ticks when this worker takes both queues, so
        # that a long run does not hold the monitor up (one active run at a time anyway).
        both = {"distill", "default"} <= {q.strip() for q in queues.split(",")}
        concurrency = settings.worker.concurrency + (1 if both else 0)
    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={concurrency}",
        f"--loglevel={(loglevel or settings.log_level).upper()}",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if embed_beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    app.worker_main(argv=argv)


@click.command()
@click.option("--loglevel", default=None, help="Default: the settings' log_level.")
def beat(loglevel: str | None) -> None:
    """Run the scheduler: the monitor tick and the scheduled incremental runs."""
    from distill_worker.celery_app import make_celery

    settings = _ready_settings()
    app = make_celery(settings)
    app.start(
        argv=[
            "beat",
            f"--loglevel={(loglevel or settings.log_level).upper()}",
            f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
        ]
    )
