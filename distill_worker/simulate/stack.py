"""Start the system under simulation as real processes: `chatdistill serve`, `worker`, `beat`.

The same code runs the embedded default (SQLite in the data folder, Celery over SQLAlchemy on
it, no Redis) and production-like settings (Postgres + Redis): only the environment differs.
Each process logs to `<data_dir>/sim-logs/<name>.log`. Attaching to a running system instead
is the caller's choice (`run.py` then needs only a base URL and an operator login).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


class StackError(RuntimeError):
    """A process of the stack failed to start; the message names its log file."""


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    port: int
    database_url: str | None = None  # None: the embedded SQLite file in data_dir
    redis_url: str | None = None  # None: no Redis (events by polling, Celery over SQLAlchemy)
    env: dict[str, str] = field(default_factory=dict)  # more CHATDISTILL_* settings

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
        env.update(
            {
                "CHATDISTILL_DATA_DIR": str(self.data_dir.resolve()),
                # The simulation is one client IP sending hundreds of conversations.
                "CHATDISTILL_RATE_LIMIT__ENABLED": "false",
                "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            }
        )
        if self.database_url:
            env["CHATDISTILL_DATABASE__URL"] = self.database_url
        if self.redis_url:
            env["CHATDISTILL_REDIS__URL"] = self.redis_url
        env.update(self.env)
        return env


class Stack:
    """chat_api + worker + beat for one simulation; a context manager that stops them all."""

    def __init__(self, config: StackConfig, *, worker: bool = True, beat: bool = True) -> None:
        self.config = config
        self.roles = ["serve"] + (["worker"] if worker else []) + (["beat"] if beat else [])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self.log_dir = config.data_dir / "sim-logs"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run one `chatdistill` command in the stack's environment; -> its output."""
        done = subprocess.run(  # noqa: S603 - our own CLI; arguments are ours
            [sys.executable, "-m", "chat_api.cli", *args],
            env=self.config.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"`chatdistill {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def prepare(self, *, operator_email: str, operator_password: str) -> None:
        """Migrate the store and make sure the simulation's operator exists."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.cli("db", "upgrade")
        try:
            self.cli(
                "operators", "create", "--email", operator_email, "--role", "admin",
                "--password-stdin", stdin=operator_password + "\n",
            )  # fmt: skip
        except StackError as exc:
            if "already" not in str(exc).lower() and "exists" not in str(exc).lower():
                raise

    def start(self, ready_timeout_s: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        commands = {
            "serve": ["serve", "--port", str(self.config.port)],
            "worker": ["worker"],
            "beat": ["beat"],
        }
        for role in self.roles:
            log = (self.log_dir / f"{role}.log").open("ab")
            self._logs[role] = log
            self.procs[role] = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "chat_api.cli", *commands[role]],
                env=self.config.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout_s
        while True:
            self.check_alive()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"the API was not ready in {ready_timeout_s:.0f} s; see "
                                 f"{self.log_dir / 'serve.log'}")  # fmt: skip
            time.sleep(0.5)

    def check_alive(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"`chatdistill {role}` exited with {proc.returncode}; see "
                    f"{self.log_dir / (role + '.log')}"
                )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self._logs.values():
            log.close()
        self.procs.clear()
        self._logs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
