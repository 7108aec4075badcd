"""The Celery app from the settings, and the embedded default for real: `chatdistill worker
--beat` on kombu's SQLAlchemy transport over the SQLite file (no Redis), whose tick sends a
queued run to the worker, which fails it with a readable reason (an empty store has nothing to
train on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from celery.schedules import crontab
from kombu.transport import sqlalchemy as sqla

from distill_worker.celery_app import EXECUTE_RUN, beat_schedule, broker_url, make_celery
from feedback import migrate
from feedback.db import make_engine, make_session_factory, session_scope
from feedback.models import DistillRun
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.runs import RunRepository
from feedback.settings import Settings
from tests.live.server import free_port


def test_the_app_from_redis_settings() -> None:
    settings = Settings(
        redis={"url": "redis://127.0.0.1:6379/5"},
        worker={"visibility_timeout_s": 7200, "concurrency": 2},
        monitor={"tick_seconds": 30, "schedule_cron": "15 2 * * 1-5"},
    )
    conf = make_celery(settings).conf
    assert conf.broker_url == conf.result_backend == "redis://127.0.0.1:6379/5"
    assert conf.broker_transport_options == {"visibility_timeout": 7200}
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 2
    assert {q.name for q in conf.task_queues} == {"distill", "default"}
    assert conf.task_routes[EXECUTE_RUN] == {"queue": "distill"}
    schedule = beat_schedule(settings)
    assert schedule["monitor-tick"]["schedule"] == 30
    cron = schedule["scheduled-run"]["schedule"]
    assert isinstance(cron, crontab) and cron.hour == {2} and cron.minute == {15}
    assert cron.day_of_week == {1, 2, 3, 4, 5}


def test_the_embedded_default_needs_no_redis(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, worker={"sqla_polling_interval_s": 0.25})
    app = make_celery(settings)
    assert broker_url(settings) == f"sqla+sqlite:///{(tmp_path / 'chatdistill.db').resolve()}"
    assert app.conf.result_backend is None and app.conf.task_ignore_result
    assert sqla.Transport.polling_interval == 0.25
    assert "scheduled-run" in beat_schedule(settings)  # the default cron
    assert "scheduled-run" not in beat_schedule(Settings(monitor={"schedule_cron": ""}))


def test_an_embedded_worker_runs_a_queued_run(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings)
    migrate.upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        run = RunRepository(session).open_run("manual", {"test": "embedded"}, {})
        assert run is not None
        run_id = run.id
        versions = ModelVersionRepository(session)
        versions.register(version_id="mv-embedded", bundle_uri="/nowhere", checksum="0" * 64)
        versions.set_alias(PRODUCTION, "mv-embedded", reason="test")
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    env.update(
        {
            "CHATDISTILL_DATA_DIR": str(tmp_path),
            "CHATDISTILL_MONITOR__TICK_SECONDS": "1",
            "CHATDISTILL_MONITOR__SCHEDULE_CRON": "",
            "CHATDISTILL_WORKER__SQLA_POLLING_INTERVAL_S": "0.2",
            "CHATDISTILL_WORKER__METRICS_PORT": str(metrics_port),
            "OMP_NUM_THREADS": "1",
        }
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "chat_api.cli", "worker", "--beat"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            with session_scope(factory) as session:
                row = session.get(DistillRun, run_id)
                assert row is not None
                if row.finished_at is not None:
                    break
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        assert row.status == "failed" and row.task_id is not None and row.attempts == 1
        assert (row.error or "").startswith("snapshot: nothing to train on"), row.error
        assert row.config["distill"]["enc_layers"] == 3  # filled in from the worker's settings
        # The process that ran the ticks serves the monitor's gauges.
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'chatdistill_monitor_decisions_total{decision="none"}' in scraped
        armed = 'chatdistill_monitor_armed{metric="positive_rate",model_version="mv-embedded"}'
        assert f"{armed} 1.0" in scraped, scraped
    finally:
        worker.terminate()  # a warm shutdown of the main process, which stops its children
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            raise
        finally:
            engine.dispose()


def test_the_worker_refuses_a_bad_run_config_at_start(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from distill_worker.worker_cli import worker

    env = {
        "CHATDISTILL_DATA_DIR": str(tmp_path),
        "CHATDISTILL_WORKER__COMPRESSION": '{"dec_hidden": 65, "dec_heads": 2}',
    }
    result = CliRunner().invoke(worker, [], env=env)
    assert result.exit_code == 1
    assert "dec_hidden (65) must be divisible by dec_heads (2)" in result.output
