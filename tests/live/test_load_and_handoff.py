"""A real server with the tiny student, on the embedded SQLite file and on PostgreSQL, under
simultaneous messages: no request holds the store while the model thinks, so nothing fails or
gets lost, and a conversation handed to a human gets no bot reply after the handoff notice.

Operators work during the load too, and their requests must answer. (An operator dependency
that left its read transaction open stalled the whole API on SQLite for the 30 s busy timeout
once the request threads were all busy; `bench/load.py`, which runs the full-size load and
times the operator from a process of its own, reproduced it on every first run, this shorter
test did not.)"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from bundle_runtime.deploy import deploy_bundle
from feedback import migrate
from feedback.db import session_scope
from feedback.models import ActorType, Message, MessageRole, OperatorRole
from feedback.repositories.operators import OperatorRepository
from tests.conftest import TEST_SECRET, create_database, drop_database
from tests.live.server import running_server

pytest.importorskip("torch", reason="the tiny bundle is trained and exported with torch")
from tests.fixtures.tiny_bundle import TOY, TinyBundle

OFF_TOPIC = TOY["out_of_scope"][0][0]  # the tiny student hands these off
ON_TOPIC = TOY["track_order"][0]  # its texts
# Two conversations with BURST simultaneous messages each and CROWD customers with one message
# each: more requests than the server has request threads (40), as in bench/load.py.
BURST, CROWD = 25, 40


@dataclass(frozen=True)
class Live:
    base: str
    db_url: str


@contextmanager
def serve_tiny(tmp: Path, bundle: TinyBundle, db_url: str) -> Iterator[str]:
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    with session_scope(sessionmaker(bind=engine, expire_on_commit=False)) as session:
        deploy_bundle(
            session, bundle.path, tmp / "bundles", alias="production", reason="load test",
            actor_type=ActorType.CLI,
        )  # fmt: skip
    engine.dispose()
    env = {
        "CHATDISTILL_DATA_DIR": str(tmp),
        "CHATDISTILL_DATABASE__URL": db_url,
        "CHATDISTILL_AUTH__SECRET_KEY": TEST_SECRET,
        "CHATDISTILL_SERVING__PRECISION": "fp32",
        "CHATDISTILL_RATE_LIMIT__PER_IP_PER_MINUTE": "100000",
        "CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": "10000",
        "CHATDISTILL_RATE_LIMIT__CONVERSATIONS_PER_IP_PER_HOUR": "100000",
        "CHATDISTILL_LOG_LEVEL": "WARNING",
    }
    with running_server(env) as base:
        yield base


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path, tiny_bundle: TinyBundle) -> Iterator[Live]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        with serve_tiny(tmp_path, tiny_bundle, url) as base:
            yield Live(base, url)
        return
    name = f"chatdistill_load_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    try:
        with serve_tiny(tmp_path, tiny_bundle, url) as base:
            yield Live(base, url)
    finally:
        drop_database(name)


def start(client: httpx.Client, base: str) -> tuple[str, dict[str, str]]:
    body = client.post(f"{base}/v1/widget/conversations", json={}).json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


def post(base: str, cid: str, headers: dict[str, str], text: str) -> httpx.Response:
    with httpx.Client(timeout=60) as client:
        return client.post(
            f"{base}/v1/widget/conversations/{cid}/messages", json={"text": text}, headers=headers
        )


def operator_token(db_url: str) -> str:
    """A session token of a new operator, written straight into the server's store."""
    engine = create_engine(db_url)
    try:
        with session_scope(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            repo = OperatorRepository(session)
            operator = repo.create(
                email=f"load-{uuid.uuid4().hex[:8]}@example.com",
                name="Load Operator",
                password="a long enough load-test password",
                role=OperatorRole.OPERATOR,
            )
            return repo.issue_session(operator, ttl=dt.timedelta(hours=1)).token
    finally:
        engine.dispose()


def stored(db_url: str, cid: str) -> list[Message]:
    engine = create_engine(db_url)
    try:
        with session_scope(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            return list(
                session.scalars(
                    select(Message)
                    .where(Message.conversation_id == uuid.UUID(cid))
                    .order_by(Message.seq)
                )
            )
    finally:
        engine.dispose()


def test_simultaneous_off_topic_messages_hand_off_once_and_the_bot_stays_quiet(
    live: Live,
) -> None:
    with httpx.Client(timeout=30) as client:
        cid, headers = start(client, live.base)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: post(live.base, cid, headers, OFF_TOPIC), range(20)))
    assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers if r.is_error]
    rows = stored(live.db_url, cid)
    assert sum(m.role == MessageRole.CUSTOMER.value for m in rows) == 20
    notices = [m for m in rows if m.role == MessageRole.SYSTEM.value]
    assert len(notices) == 1
    after = [m for m in rows if m.seq > notices[0].seq and m.role == MessageRole.ASSISTANT.value]
    assert after == []
    assert sum(r.json()["reply"] is not None for r in answers) == 1


def test_bursts_and_crowds_lose_nothing(live: Live) -> None:
    """Two conversations with BURST simultaneous messages each and CROWD customers with one
    message each, all at once, and an operator reading while they wait: every request answers
    201 (the operator's 200), every message is stored once, and every reply a customer received
    is the one stored (a busy conversation may be handed off midway, after which its later
    messages get no bot reply)."""
    with httpx.Client(timeout=30) as client:
        bursts = [start(client, live.base) for _ in range(2)]
        crowd = [start(client, live.base) for _ in range(CROWD)]
    jobs = [(cid, h, ON_TOPIC[i % len(ON_TOPIC)]) for cid, h in bursts for i in range(BURST)]
    jobs += [(cid, h, ON_TOPIC[0]) for cid, h in crowd]
    operator = {"Authorization": f"Bearer {operator_token(live.db_url)}"}

    def operator_reads(path: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.get(f"{live.base}{path}", headers=operator)

    with ThreadPoolExecutor(max_workers=len(jobs) + 4) as pool:
        customers = [pool.submit(post, live.base, *job) for job in jobs]
        time.sleep(0.5)  # the customers hold every request thread by now
        operators = [
            pool.submit(operator_reads, path)
            for path in ["/v1/operator/me", "/v1/operator/metrics/summary"] * 2
        ]
        answers = [f.result() for f in customers]
        operator_statuses = [f.result().status_code for f in operators]
    errors = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 201]
    assert errors == []
    assert operator_statuses == [200] * 4
    received: dict[str, set[str]] = {}
    for (cid, _, _), answer in zip(jobs, answers, strict=True):
        reply = answer.json()["reply"]
        received.setdefault(cid, set()).update([reply["id"]] if reply else [])
    for cid, _ in [*bursts, *crowd]:
        rows = stored(live.db_url, cid)
        customers = sum(m.role == MessageRole.CUSTOMER.value for m in rows)
        assert customers == (BURST if (cid, _) in bursts else 1)
        replies = {str(m.id) for m in rows if m.role == MessageRole.ASSISTANT.value}
        assert replies == received[cid]
        assert [m.seq for m in rows] == list(range(1, len(rows) + 1))
        notices = [m.seq for m in rows if m.role == MessageRole.SYSTEM.value]
        assert len(notices) <= 1
        if notices:
            assert all(m.seq < notices[0] for m in rows if m.role == MessageRole.ASSISTANT.value)
    assert all(received[cid] for cid, _ in crowd)  # a lone, clear question gets its answer
