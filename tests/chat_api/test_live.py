"""The live streams over real HTTP (uvicorn in a thread; a database of this module's own, since
a stream reads what other requests committed): the widget receives state changes and agent
replies, a reconnect resumes exactly after its last message, the inbox hears new handoffs; and
two app instances on one PostgreSQL and one Redis hand events to each other."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from chat_api.app import create_app
from feedback import migrate
from feedback.db import session_scope
from feedback.models import OperatorRole
from feedback.repositories.operators import OperatorRepository
from feedback.settings import Settings
from tests.conftest import REDIS_URL, TEST_SECRET, create_database, drop_database
from tests.fixtures.sse import Stream
from tests.live.server import free_port

PASSWORD = "a long enough operator password"


@pytest.fixture(scope="module")
def live_db() -> Iterator[str]:
    name = f"chatdistill_live_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    drop_database(name)


def _settings(tmp_path: Path, db_url: str, redis_prefix: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database={"url": db_url},
        auth={"secret_key": TEST_SECRET},
        redis={"url": REDIS_URL, "key_prefix": redis_prefix} if redis_prefix else {},
        rate_limit={"enabled": False},
        live={"poll_interval_s": 30.0, "keepalive_s": 30.0},  # wake-ups only, no polling
    )


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning"
    )
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _widget(base: str) -> tuple[str, dict[str, str]]:
    body = httpx.post(f"{base}/v1/widget/conversations", json={}).json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


def _operator(db_url: str, base: str, role: OperatorRole = OperatorRole.OPERATOR) -> dict[str, str]:
    email = f"live-{uuid.uuid4().hex[:10]}@example.com"
    engine = create_engine(db_url)
    with session_scope(sessionmaker(bind=engine)) as session:
        OperatorRepository(session).create(email=email, name="Live", password=PASSWORD, role=role)
    engine.dispose()
    token = httpx.post(
        f"{base}/v1/operator/login", json={"email": email, "password": PASSWORD}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _hand_off(base: str, cid: str, widget: dict[str, str]) -> None:
    response = httpx.post(f"{base}/v1/widget/conversations/{cid}/handoff", headers=widget)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("with_redis", [False, True], ids=["in-process", "redis"])
def test_widget_stream_gets_state_changes_and_agent_replies(
    tmp_path: Path, live_db: str, redis_prefix: str, with_redis: bool
) -> None:
    settings = _settings(tmp_path, live_db, redis_prefix if with_redis else None)
    with serving(settings) as base:
        cid, widget = _widget(base)
        operator = _operator(live_db, base)
        stream = Stream(f"{base}/v1/widget/conversations/{cid}/events", widget)
        inbox = Stream(f"{base}/v1/operator/inbox/events", operator)
        try:
            assert stream.next("status")["status"] == 200
            assert stream.next("state")["data"] == {"state": "bot", "handed_off": False}
            first = inbox.next("inbox")["data"]
            _hand_off(base, cid, widget)
            assert stream.next("state")["data"] == {"state": "waiting", "handed_off": True}
            notice = stream.next("message")
            assert notice["id"] == 1 and notice["data"]["role"] == "system"
            assert inbox.next("inbox")["data"]["waiting_count"] == first["waiting_count"] + 1

            ops = f"{base}/v1/operator/conversations/{cid}"
            assert httpx.post(f"{ops}/claim", headers=operator).status_code == 200
            assert stream.next("state")["data"]["state"] == "agent"
            assert stream.next("message")["data"]["text"] == "An agent joined the conversation."
            assert httpx.post(f"{ops}/typing", headers=operator).status_code == 204
            assert stream.next("typing")["data"] == {"role": "agent"}
            sent = httpx.post(f"{ops}/messages", json={"text": "Hello!"}, headers=operator)
            assert sent.status_code == 201
            reply = stream.next("message")
            assert reply["data"]["role"] == "agent" and reply["data"]["text"] == "Hello!"
            assert reply["id"] == sent.json()["seq"] == 3
        finally:
            stream.close()
            inbox.close()


def test_a_reconnect_gets_exactly_the_missed_messages(tmp_path: Path, live_db: str) -> None:
    settings = _settings(tmp_path, live_db, None)
    with serving(settings) as base:
        cid, widget = _widget(base)
        operator = _operator(live_db, base)
        _hand_off(base, cid, widget)
        ops = f"{base}/v1/operator/conversations/{cid}"
        httpx.post(f"{ops}/claim", headers=operator)
        url = f"{base}/v1/widget/conversations/{cid}/events"
        first = Stream(url, widget)
        seen = [first.next("message")["id"] for _ in range(2)]  # notice (1), joined (2)
        first.close()
        for n in range(5):  # written while the widget was away
            assert (
                httpx.post(f"{ops}/messages", json={"text": f"m{n}"}, headers=operator).status_code
                == 201
            )
        again = Stream(url, {**widget, "Last-Event-ID": str(seen[-1])})
        try:
            missed = [again.next("message") for _ in range(5)]
            assert [m["id"] for m in missed] == [3, 4, 5, 6, 7]
            assert [m["data"]["text"] for m in missed] == [f"m{n}" for n in range(5)]
            httpx.post(f"{ops}/messages", json={"text": "live"}, headers=operator)
            assert again.next("message")["id"] == 8  # no duplicate before it
        finally:
            again.close()
        bad = httpx.get(f"{url}?after=-1", headers=widget, timeout=10)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
        by_query = Stream(f"{url}?after=6", widget)
        try:
            assert [by_query.next("message")["id"] for _ in range(2)] == [7, 8]
        finally:
            by_query.close()


def test_two_instances_share_events_through_redis(
    tmp_path: Path, live_db: str, redis_prefix: str
) -> None:
    """Operator on instance A, widget stream on instance B: only Redis links their buses (the
    polling fallback is set to 30 s, so a delivery within 10 s came through pub/sub)."""
    settings = _settings(tmp_path, live_db, redis_prefix)
    with serving(settings) as a, serving(settings) as b:
        cid, widget = _widget(a)
        operator = _operator(live_db, a)
        _hand_off(a, cid, widget)
        stream = Stream(f"{b}/v1/widget/conversations/{cid}/events", widget)
        try:
            assert stream.next("state")["data"]["state"] == "waiting"
            stream.next("message")
            ops = f"{a}/v1/operator/conversations/{cid}"
            assert httpx.post(f"{ops}/claim", headers=operator).status_code == 200
            assert stream.next("state")["data"]["state"] == "agent"
            httpx.post(f"{ops}/messages", json={"text": "from A"}, headers=operator)
            texts = [stream.next("message")["data"]["text"] for _ in range(2)]
            assert texts == ["An agent joined the conversation.", "from A"]
        finally:
            stream.close()
