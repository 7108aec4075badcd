"""Handoff delivered live by real `chatdistill serve` processes.

- Two processes on one PostgreSQL and one Redis: the operator works on process A, the widget's
  event stream is on process B; the reply arrives through Redis pub/sub (the stream's polling
  fallback is set to 60 s, so a delivery within seconds did not come from polling).
- 20 customers wait at once, each with its stream open; the operator claims and answers all of
  them; every customer gets exactly its own reply, none lost or duplicated.
- The same on the embedded SQLite default with one process and no Redis (the in-process bus).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, TEST_SECRET, create_database, drop_database
from tests.fixtures.sse import Stream
from tests.live.server import running_server

ADMIN_EMAIL = "handoff.admin@example.com"
ADMIN_PASSWORD = "a long enough admin password"
CUSTOMERS = 20


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {
        "CHATDISTILL_DATA_DIR": str(data),
        "CHATDISTILL_AUTH__SECRET_KEY": TEST_SECRET,
        "CHATDISTILL_RATE_LIMIT__PER_IP_PER_MINUTE": "100000",
        "CHATDISTILL_RATE_LIMIT__CONVERSATIONS_PER_IP_PER_HOUR": "100000",
        "CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": "1000",
        "CHATDISTILL_LIVE__POLL_INTERVAL_S": "60",
        "CHATDISTILL_LIVE__KEEPALIVE_S": "60",
        "CHATDISTILL_LOG_LEVEL": "WARNING",
        **extra,
    }


def _admin(base: str, env: dict[str, str]) -> dict[str, str]:
    """An admin created with the CLI's bootstrap path (the store the servers use), logged in."""
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    created = subprocess.run(
        [sys.executable, "-m", "chat_api.cli", "operators", "create", "--email", ADMIN_EMAIL,
         "--name", "Admin", "--role", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD, env={**process_env, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    login = httpx.post(
        f"{base}/v1/operator/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _waiting_customer(base: str) -> tuple[str, dict[str, str]]:
    started = httpx.post(f"{base}/v1/widget/conversations", json={}, timeout=10).json()
    cid, widget = started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}
    asked = httpx.post(f"{base}/v1/widget/conversations/{cid}/handoff", headers=widget, timeout=10)
    assert asked.status_code == 200, asked.text
    return cid, widget


def _deliver_to_everyone(operator_base: str, widget_base: str, admin: dict[str, str]) -> None:
    customers = [_waiting_customer(operator_base) for _ in range(CUSTOMERS)]
    streams = [
        Stream(f"{widget_base}/v1/widget/conversations/{cid}/events", widget)
        for cid, widget in customers
    ]
    try:
        for stream in streams:
            assert stream.next("status")["status"] == 200
            assert stream.next("state")["data"]["state"] == "waiting"
            assert stream.next("message")["id"] == 1  # the handoff notice
        replies = {}
        for index, (cid, _) in enumerate(customers):
            ops = f"{operator_base}/v1/operator/conversations/{cid}"
            assert httpx.post(f"{ops}/claim", headers=admin, timeout=10).status_code == 200
            # Words, not the id: an id's hex can be all digits, which redaction takes for a phone.
            text = f"Hello, agent number {index + 1} here."
            sent = httpx.post(f"{ops}/messages", json={"text": text}, headers=admin, timeout=10)
            assert sent.status_code == 201, sent.text
            replies[cid] = text
        for (cid, _), stream in zip(customers, streams, strict=True):
            joined = stream.next("message", timeout=15)
            reply = stream.next("message", timeout=15)
            assert (joined["id"], reply["id"]) == (2, 3)
            assert reply["data"]["role"] == "agent" and reply["data"]["text"] == replies[cid]
            assert stream.events.empty() or all(
                e.get("event") != "message" for e in list(stream.events.queue)
            )  # nothing duplicated after it
    finally:
        for stream in streams:
            stream.close()


@pytest.fixture
def postgres_pair(tmp_path: Path, redis_prefix: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    name = f"chatdistill_handoff_{uuid.uuid4().hex[:12]}"
    db_url = create_database(name)
    env = _env(
        tmp_path / "data",
        CHATDISTILL_DATABASE__URL=db_url,
        CHATDISTILL_REDIS__URL=REDIS_URL,
        CHATDISTILL_REDIS__KEY_PREFIX=redis_prefix,
    )
    try:
        with ExitStack() as stack:
            a = stack.enter_context(running_server(env, "--migrate"))
            b = stack.enter_context(running_server(env))
            yield a, b, env
    finally:
        drop_database(name)


def test_operator_on_a_reaches_widgets_on_b(postgres_pair: tuple[str, str, dict[str, str]]) -> None:
    a, b, env = postgres_pair
    admin = _admin(a, env)
    _deliver_to_everyone(a, b, admin)


def test_embedded_sqlite_one_process(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    with running_server(env) as base:
        admin = _admin(base, env)
        _deliver_to_everyone(base, base, admin)
