"""Start a real `chatdistill serve` process for tests and benchmarks, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(env_overrides: dict[str, str], *args: str) -> Iterator[str]:
    """Yield the base URL of a real API server started with the given environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    env.update(env_overrides)
    port = free_port()
    # The server's output goes to a file, never to a pipe nobody reads while it runs: a busy
    # server would fill the pipe's buffer and block in its logging calls.
    with tempfile.TemporaryFile(mode="w+", prefix="chatdistill-serve-") as output_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "chat_api.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=output_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    output_file.seek(0)
                    raise RuntimeError(f"the server exited early:\n{output_file.read()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not become ready in 60 s")
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
