"""A real vLLM OpenAI-compatible server on loopback for the integration tests, shared by the
pytest-xdist workers of one run (one server takes 4-5 GiB and minutes to start).

The first worker that needs it starts it (under a file lock) and writes its address; the others
reuse it. Each worker holds a reference while its session lasts; the last one to leave stops it.
`CHATDISTILL_TEST_VLLM_URL` points the tests at a server already running instead (started with
the same options: --served-model-name smollm2 --dtype float32 --max-logprobs 20).

The server runs the prepared SmolLM2 folder in float32 (`--dtype float32`; vLLM would pick
bfloat16 on this CPU), so that its logprobs can be compared with the in-process fp32 teacher
tightly, and without torch.compile (`--enforce-eager`: compiling took about 4 of the 5 minutes
of a start on this shared 2-core machine; the tests check answers, not speed).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(
    os.environ.get("CHATDISTILL_VLLM_PYTHON", REPO / ".vllm-venv" / "bin" / "python")
)
SERVED_NAME = "smollm2"
START_TIMEOUT_S = float(os.environ.get("CHATDISTILL_VLLM_START_TIMEOUT", "900"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def _locked(state_dir: Path) -> Iterator[dict[str, Any]]:
    """The shared state (url, pid, users) under an exclusive lock; written back on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = state_dir / "state.json"
        state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        yield state
        path.write_text(json.dumps(state))


def start(model_dir: Path, log_path: Path) -> tuple[str, subprocess.Popen[bytes], float]:
    """Start a server, wait until /health answers; returns its URL, process and start seconds."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    args = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model"]
    args += [str(model_dir), "--served-model-name", SERVED_NAME, "--dtype", "float32"]
    args += ["--max-model-len", "2048", "--max-logprobs", "20", "--enforce-eager"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vLLM exited with {proc.returncode} while starting:\n{tail}")
        if healthy(url):
            return url, proc, time.monotonic() - started
        time.sleep(2)
    stop(proc.pid)
    raise RuntimeError(f"vLLM did not answer /health within {START_TIMEOUT_S} s; see {log_path}")


def stop(pid: int) -> None:
    """Stop the server we started (its own process group: API server + engine core)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(60):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pid, signal.SIGKILL)


@contextmanager
def shared_server(model_dir: Path, state_dir: Path) -> Iterator[tuple[str, float]]:
    """(url, seconds this worker waited for it to start) of the run's one server."""
    configured = os.environ.get("CHATDISTILL_TEST_VLLM_URL")
    if configured:
        yield configured.rstrip("/"), 0.0
        return
    waited = 0.0
    with _locked(state_dir) as state:
        url = state.get("url")
        if not (isinstance(url, str) and healthy(url)):
            url, proc, waited = start(model_dir, state_dir / "vllm.log")
            state.update(url=url, pid=proc.pid, users=0, start_seconds=round(waited, 1))
        state["users"] = int(state.get("users", 0)) + 1
    try:
        yield url, waited
    finally:
        with _locked(state_dir) as state:
            state["users"] = int(state.get("users", 1)) - 1
            if state["users"] <= 0 and isinstance(state.get("pid"), int):
                stop(state["pid"])
                state.clear()
