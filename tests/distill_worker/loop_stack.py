"""A real continual-loop stack for end-to-end tests: a database of its own (migrated, seeded
with the demo corpus), a redis-server of its own on a free port (so restarting it touches no
one else, and no other test consumes our queues), and `chatdistill worker` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import redis
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.data.demo_corpus import demo_utterances
from distill_worker.data.importers.records import SeedRecord
from distill_worker.data.importers.store import store_records
from distill_worker.simulate.presets import TINY_STUDENT
from feedback import migrate
from feedback.db import make_session_factory
from tests.conftest import create_database, drop_database
from tests.live.server import free_port

# The simulation's tiny student (test_pipeline_real.py's, with time caps): a run is about a
# minute.
TINY = TINY_STUDENT


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start in 10 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Stack:
    db_url: str
    data_dir: Path
    redis: RedisServer
    env: dict[str, str]
    sessions: sessionmaker[Session]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(self, name: str) -> subprocess.Popen[str]:
        log = self.data_dir / f"worker-{name}.log"
        handle: IO[str] = log.open("w", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "chat_api.cli", "worker", "--beat", "--hostname",
             f"{name}@loop-test", "--loglevel", "INFO"],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool child
        )  # fmt: skip
        self.workers.append(process)
        self.logs.append(log)
        return process

    def kill_worker(self, process: subprocess.Popen[str]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_workers(self) -> None:
        """Stop every worker's process group: a worker whose main process died (e.g. on a
        broker error) can leave its pool and beat children behind."""
        for process in self.workers:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                if sig == signal.SIGTERM:
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and _group_alive(process.pid):
                        time.sleep(0.2)
            if process.poll() is None:
                process.wait(timeout=10)

    def ensure_worker(self, name: str) -> None:
        """What a process supervisor does: start a worker if none is running."""
        if all(p.poll() is not None for p in self.workers):
            self.start_worker(name)

    def log_text(self) -> str:
        return "\n".join(p.read_text(encoding="utf-8", errors="replace")[-4000:] for p in self.logs)

    @contextmanager
    def api(self) -> Iterator[str]:
        """A real `chatdistill serve` on this stack, logging to a file (a pipe nobody reads
        would fill up and stall the server under load)."""
        port = free_port()
        log = self.data_dir / "api.log"
        handle: IO[str] = log.open("w", encoding="utf-8")
        server = subprocess.Popen(
            [sys.executable, "-m", "chat_api.cli", "serve", "--port", str(port)],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.logs.append(log)
        base = f"http://127.0.0.1:{port}"
        try:
            self.wait_for("the API", lambda: _ready(base, server), 90)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
            handle.close()

    def logged(self, text: str) -> bool:
        return any(text in p.read_text(encoding="utf-8", errors="replace") for p in self.logs)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; worker logs:\n{self.log_text()}"
                )
            time.sleep(0.5)


def _ready(base: str, server: subprocess.Popen[str]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"the API exited with {server.returncode}")
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def seed_demo_corpus(sessions: sessionmaker[Session], per_intent: int = 8) -> int:
    rows = demo_utterances(seed=0, per_intent=per_intent)
    records = [SeedRecord(text=r.text, intent=r.intent, reply=r.reply) for r in rows]
    with sessions() as session, session.begin():
        store_records(session, "demo", "demo_corpus", records)
    return len(records)


@contextmanager
def loop_stack(tmp: Path, responder_dir: Path, **overrides: str) -> Iterator[Stack]:
    name = f"chatdistill_loop_{uuid.uuid4().hex[:12]}"
    db_url = create_database(name)
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    data_dir = tmp / "data"
    data_dir.mkdir()
    (tmp / "redis").mkdir()
    try:
        with redis_server(tmp / "redis") as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
            env.update(
                {
                    "OMP_NUM_THREADS": "1",
                    "CHATDISTILL_DATA_DIR": str(data_dir),
                    "CHATDISTILL_DATABASE__URL": db_url,
                    "CHATDISTILL_REDIS__URL": server.url,
                    "CHATDISTILL_AUTH__SECRET_KEY": "loop-test-secret-0123456789abcdef",
                    "CHATDISTILL_MONITOR__TICK_SECONDS": "2",
                    "CHATDISTILL_MONITOR__SCHEDULE_CRON": "",
                    "CHATDISTILL_WORKER__RESPONDER_DIR": str(responder_dir),
                    "CHATDISTILL_WORKER__DISTILL": json.dumps(TINY),
                    "CHATDISTILL_WORKER__REPLY_BUDGET": "6",
                    "CHATDISTILL_WORKER__TEACHER_EPOCHS": "1",
                    "CHATDISTILL_WORKER__INT8": "false",
                    "CHATDISTILL_WORKER__HEARTBEAT_S": "1",
                    "CHATDISTILL_WORKER__LEASE_S": "8",
                    "CHATDISTILL_WORKER__VISIBILITY_TIMEOUT_S": "20",
                    "CHATDISTILL_WORKER__REDISPATCH_AFTER_S": "30",
                    "CHATDISTILL_WORKER__GATE__LATENCY_BUDGET_MS": "5000",
                    "CHATDISTILL_WORKER__GATE__EVAL_REPLIES": "4",
                    # feedback written a moment before a run opens belongs to its snapshot
                    "CHATDISTILL_WORKER__SNAPSHOT_SETTLE_S": "0",
                    **overrides,
                }
            )
            stack = Stack(db_url, data_dir, server, env, make_session_factory(engine))
            try:
                yield stack
            finally:
                stack.stop_workers()
    finally:
        engine.dispose()
        drop_database(name)
