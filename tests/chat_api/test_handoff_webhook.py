"""The handoff webhook against a real HTTP receiver on loopback: a customer who asks for a human
sets off one signed POST; the signature verifies (and fails with another secret or an old
timestamp); a receiver that fails twice gets the event on the third attempt; a dead receiver
neither slows nor fails the customer's request; a URL without a secret is refused."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from chat_api.app import create_app
from chat_api.handoff_webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
)
from feedback.settings import HandoffSettings
from tests.fixtures.hot_swap import app_settings
from tests.live.server import free_port

SECRET = "a webhook secret of some length"


class Receiver:
    """A real HTTP server that records each POST; the first `fail` answer 503."""

    def __init__(self, fail: int = 0) -> None:
        self.got: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                status = 503 if receiver.calls <= fail else 204
                if status == 204:
                    receiver.got.put((dict(self.headers.items()), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/handoff"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _client(tmp_path: Path, store_url: str, url: str) -> TestClient:
    settings = app_settings(
        tmp_path, store_url, handoff={"webhook_url": url, "webhook_secret": SECRET}
    )
    return TestClient(create_app(settings))


def _ask_for_human(client: TestClient) -> tuple[str, float]:
    started = client.post("/v1/widget/conversations", json={}).json()
    cid = started["conversation_id"]
    t0 = time.perf_counter()
    asked = client.post(
        f"/v1/widget/conversations/{cid}/handoff",
        headers={"Authorization": f"Bearer {started['token']}"},
        json={"reason": "customer_request"},
    )
    elapsed = time.perf_counter() - t0
    assert asked.status_code == 200, asked.text
    return cid, elapsed


def test_a_handoff_posts_one_signed_event(
    receiver: Receiver, tmp_path: Path, store_url: str
) -> None:
    with _client(tmp_path, store_url, receiver.url) as client:
        cid, _ = _ask_for_human(client)
        headers, body = receiver.got.get(timeout=10)
    event = json.loads(body)
    assert event["event"] == "conversation.waiting"
    assert event["conversation_id"] == cid
    assert event["reason"] == "customer_request"
    assert event["waiting_since"] is not None
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify_signature(SECRET, timestamp, body, signature)
    assert not verify_signature("another secret of some length", timestamp, body, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)
    assert not verify_signature(SECRET, timestamp, body, signature, now=int(timestamp) + 3600)
    assert receiver.got.empty() and receiver.calls == 1  # one event, one call


def test_a_failing_receiver_gets_it_on_the_third_attempt(tmp_path: Path, store_url: str) -> None:
    flaky = Receiver(fail=2)
    try:
        with _client(tmp_path, store_url, flaky.url) as client:
            cid, _ = _ask_for_human(client)
            _, body = flaky.got.get(timeout=15)
        assert json.loads(body)["conversation_id"] == cid
        assert flaky.calls == 3
    finally:
        flaky.close()


def test_a_dead_receiver_does_not_hold_up_the_customer(tmp_path: Path, store_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with _client(tmp_path, store_url, dead) as client:
        timings = [_ask_for_human(client)[1] for _ in range(3)]
    assert max(timings) < 2.0, timings  # four attempts with backoff take > 3 s per event


def test_sign_matches_its_documented_recipe() -> None:
    import hashlib
    import hmac

    body = b'{"event":"conversation.waiting"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == "sha256=" + expected


@pytest.mark.parametrize(
    "values",
    [
        {"webhook_url": "https://hooks.example.com/x"},
        {"webhook_url": "https://hooks.example.com/x", "webhook_secret": "short"},
        {"webhook_url": "ftp://hooks.example.com/x", "webhook_secret": SECRET},
    ],
)
def test_a_webhook_needs_an_http_url_and_a_real_secret(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"handoff\.webhook"):
        HandoffSettings.model_validate(values)
