"""OpenAIResponder against real sockets on loopback that misbehave: a closed port, an HTTP
server answering garbage, errors, throttling or too slowly, and a server that does not speak
HTTP at all. (The real vLLM server is in test_vllm_real.py.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from distill_worker.teacher.base import TeacherBadResponse, TeacherUnavailable
from distill_worker.teacher.openai_compat import OpenAIResponder

CHAT = [{"role": "user", "content": "my card is lost"}]
GOOD = {"choices": [{"index": 0, "message": {"content": "we can help"}, "finish_reason": "stop"}]}


class Misbehaving(ThreadingHTTPServer):
    """Answers POSTs by `mode`; counts requests and the peak number in flight."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "good"
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: Misbehaving

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        srv = self.server
        with srv.lock:
            srv.calls += 1
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
            call = srv.calls
        self._counted = True
        try:
            self._answer(srv.mode, call)
        finally:
            self._leave()

    def _leave(self) -> None:
        # A request stops counting as in flight just before its answer goes out: once the
        # client has read it, it may send the next one before this thread runs again.
        if getattr(self, "_counted", False):
            self._counted = False
            with self.server.lock:
                self.server.active -= 1

    def _answer(self, mode: str, call: int) -> None:
        if mode == "good" or (mode == "429-then-good" and call > 1):
            time.sleep(0.1 if mode == "good" else 0)
            self._send(200, json.dumps(GOOD).encode(), "application/json")
        elif mode == "429-then-good":
            self._send(429, b"slow down", "text/plain", {"Retry-After": "0.3"})
        elif mode == "html":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif mode == "missing-fields":
            self._send(200, b'{"choices": [{"index": 0, "finish_reason": "stop"}]}', "text/json")
        elif mode == "no-logprobs":
            self._send(200, json.dumps(GOOD).encode(), "application/json")
        elif mode == "error-500":
            self._send(500, b'{"error": "engine dead"}', "application/json")
        elif mode == "slow":
            time.sleep(1.5)
            self._send(200, json.dumps(GOOD).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        self._leave()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Misbehaving]:
    srv = Misbehaving()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client(url: str, sleeps: list[float], **kwargs: Any) -> OpenAIResponder:
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("backoff_s", 0.01)
    return OpenAIResponder(url, "smol", sleep=sleeps.append, **kwargs)


def test_a_dead_port_is_unavailable_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the block ends
    sleeps: list[float] = []
    started = time.monotonic()
    with (
        client(f"http://127.0.0.1:{port}/v1", sleeps) as dead,
        pytest.raises(TeacherUnavailable) as info,
    ):
        dead.generate([CHAT], max_new_tokens=4, temperature=0.0, seed=None)
    assert time.monotonic() - started < 2.0
    assert sleeps == [0.01, 0.02]
    assert "failed 3 times" in str(info.value) and "ConnectError" in str(info.value)
    assert "is running" in str(info.value) and info.value.retryable


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [("html", "non-JSON: '<html>"), ("missing-fields", "lacks the field 'message'")],
)
def test_garbage_is_a_bad_response_and_not_retried(
    server: Misbehaving, mode: str, fragment: str
) -> None:
    server.mode = mode
    sleeps: list[float] = []
    with (
        client(server.url, sleeps) as teacher,
        pytest.raises(TeacherBadResponse, match=fragment) as info,
    ):
        teacher.generate([CHAT], max_new_tokens=4, temperature=0.0, seed=None)
    assert server.calls == 1 and sleeps == []
    assert "OpenAI-compatible server" in str(info.value)


def test_missing_logprobs_are_a_bad_response(server: Misbehaving) -> None:
    server.mode = "no-logprobs"
    with (
        client(server.url, []) as teacher,
        pytest.raises(TeacherBadResponse, match="lacks the field 'logprobs'"),
    ):
        teacher.generate_scored([CHAT], max_new_tokens=4, temperature=0.0, seed=0, top_k=3)


def test_server_errors_are_retried_then_unavailable(server: Misbehaving) -> None:
    server.mode = "error-500"
    sleeps: list[float] = []
    with (
        client(server.url, sleeps, max_retries=3) as teacher,
        pytest.raises(TeacherUnavailable, match=r"failed 4 times; last: HTTP 500.*engine dead"),
    ):
        teacher.tokenize("hello")
    assert server.calls == 4 and sleeps == [0.01, 0.02, 0.04]


def test_throttling_honours_retry_after(server: Misbehaving) -> None:
    server.mode = "429-then-good"
    sleeps: list[float] = []
    with client(server.url, sleeps) as teacher:
        assert teacher.generate([CHAT], max_new_tokens=4, temperature=0.0, seed=None) == [
            ["we can help"]
        ]
    assert server.calls == 2 and sleeps == [0.3]


def test_a_slow_server_times_out(server: Misbehaving) -> None:
    server.mode = "slow"
    sleeps: list[float] = []
    with (
        client(server.url, sleeps, timeout_s=0.3, max_retries=1) as teacher,
        pytest.raises(TeacherUnavailable, match="ReadTimeout"),
    ):
        teacher.generate([CHAT], max_new_tokens=4, temperature=0.0, seed=None)
    assert server.calls == 2


def test_concurrency_limit_holds_across_threads(server: Misbehaving) -> None:
    with client(server.url, [], max_concurrency=2) as teacher:
        batch = [CHAT] * 6
        threads = [
            threading.Thread(
                target=teacher.generate,
                args=(batch,),
                kwargs={"max_new_tokens": 4, "temperature": 0.0, "seed": None},
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert server.calls == 18
    assert server.peak == 2  # three callers, six chats each, never more than two in flight


def test_a_server_that_does_not_speak_http_is_a_bad_response() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def babble() -> None:
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    sleeps: list[float] = []
    try:
        with (
            client(f"http://127.0.0.1:{port}", sleeps) as teacher,
            pytest.raises(TeacherBadResponse, match="did not answer HTTP"),
        ):
            teacher.tokenize("hello")
    finally:
        listener.close()
    assert sleeps == [0.01, 0.02]  # a broken connection may be transient: retried first
