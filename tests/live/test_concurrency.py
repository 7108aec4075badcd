"""A real server on a real PostgreSQL, hit concurrently: accepted writes are committed and the
database's guarantees hold under races (one rating per reply, distinct message order)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from feedback.db import session_scope
from feedback.models import Message, MessageRole, Rating
from feedback.repositories.conversations import ConversationRepository
from tests.conftest import create_database, drop_database
from tests.live.server import running_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str]]:
    name = f"chatdistill_live_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    env = {
        "CHATDISTILL_DATA_DIR": str(tmp_path),
        "CHATDISTILL_DATABASE__URL": url,
        "CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": "1000",
        "CHATDISTILL_RATE_LIMIT__PER_IP_PER_MINUTE": "10000",
        "CHATDISTILL_LOG_LEVEL": "WARNING",
    }
    try:
        with running_server(env, "--migrate") as base:
            yield base, url
    finally:
        drop_database(name)


def test_concurrent_writes_are_all_committed_and_consistent(live: tuple[str, str]) -> None:
    base, db_url = live
    started = httpx.post(f"{base}/v1/widget/conversations", json={}).json()
    cid = uuid.UUID(started["conversation_id"])
    headers = {"Authorization": f"Bearer {started['token']}"}

    engine = create_engine(db_url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with session_scope(factory) as session:
        repo = ConversationRepository(session)
        reply = repo.add_message(repo.get(cid), role=MessageRole.ASSISTANT, text="Hello!")
    reply_id = reply.id

    def post_message(i: int) -> int:
        with httpx.Client(timeout=30) as client:
            return client.post(
                f"{base}/v1/widget/conversations/{cid}/messages",
                json={"text": f"message {i}"},
                headers=headers,
            ).status_code

    def rate(i: int) -> int:
        with httpx.Client(timeout=30) as client:
            return client.post(
                f"{base}/v1/widget/conversations/{cid}/messages/{reply_id}/rating",
                json={"thumbs": "up" if i % 2 else "down", "csat": 1 + i % 5},
                headers=headers,
            ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        message_codes = list(pool.map(post_message, range(32)))
        rating_codes = list(pool.map(rate, range(32)))

    assert set(message_codes) == {503}  # stored, no model deployed
    assert set(rating_codes) == {200}
    with factory() as session:
        seqs = session.scalars(
            select(Message.seq).where(Message.conversation_id == cid).order_by(Message.seq)
        ).all()
        assert list(seqs) == list(range(1, 34))  # the reply + 32 customer messages, no gaps
        texts = set(
            session.scalars(
                select(Message.text).where(Message.role == MessageRole.CUSTOMER.value)
            ).all()
        )
        assert texts == {f"message {i}" for i in range(32)}
        assert session.scalar(select(func.count(Rating.id))) == 1
        rating = session.scalars(select(Rating)).one()
        assert rating.message_id == reply_id and rating.thumbs in (-1, 1)
    engine.dispose()
