"""The widget's SSE reply stream against a real tiny bundle and real PostgreSQL: the event
contract (message, token*, reply | error), the same text as the non-streaming endpoint, what is
stored, no model, handed-off conversations, validation and auth; and overload (503 with
Retry-After, nothing stored) with recovery, for both widget endpoints."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from chat_api.batching.scheduler import SchedulerConfig
from chat_api.replies import HANDOFF_NOTICE
from feedback.models import Message
from feedback.settings import Settings
from tests.fixtures.serving import VERSION, register, serving
from tests.fixtures.tiny_bundle import TinyBundle
from tests.fixtures.widget import post, start


def stream(client: TestClient, cid: str, headers: dict[str, str], text: str) -> httpx.Response:
    url = f"/v1/widget/conversations/{cid}/messages/stream"
    return client.post(url, json={"text": text}, headers=headers)


def events(response: httpx.Response) -> list[tuple[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in response.text.split("\n\n"):
        if not block:
            continue
        head, data = block.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        out.append((head[len("event: ") :], json.loads(data[len("data: ") :])))
    return out


def messages(db: Session, cid: str) -> list[Message]:
    query = select(Message).where(Message.conversation_id == uuid.UUID(cid)).order_by(Message.seq)
    return list(db.scalars(query).all())


def test_stream_sends_message_tokens_and_the_stored_reply(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    with serving(settings, session_factory) as client:
        cid, headers = start(client)
        got = events(stream(client, cid, headers, "where is my order"))
        plain_cid, plain_headers = start(client)
        plain = post(client, plain_cid, plain_headers, "where is my order").json()
        follow_up = events(stream(client, cid, headers, "i want a refund"))
    kinds = [kind for kind, _ in got]
    assert kinds[0] == "message" and kinds[-1] == "reply"
    assert set(kinds[1:-1]) == {"token"} and len(kinds) > 4
    message, reply = got[0][1], got[-1][1]
    assert set(message) == set(plain["message"]) and message["text"] == "where is my order"
    assert message["role"] == "customer" and message["seq"] == 1
    streamed = "".join(data["text"] for kind, data in got if kind == "token")
    assert streamed == reply["reply"]["text"] == plain["reply"]["text"]
    assert streamed == "your order is on its way" and reply["handoff"] is False
    assert set(reply["reply"]) == set(plain["reply"])
    assert reply["reply"]["model_version"] == VERSION and reply["reply"]["seq"] == 2
    stored = messages(db, cid)
    assert [m.role for m in stored] == ["customer", "assistant", "customer", "assistant"]
    assert str(stored[1].id) == reply["reply"]["id"] and stored[1].text == streamed
    assert stored[1].intent == "track_order" and stored[1].latency_ms and stored[1].latency_ms > 0
    # The second reply read the conversation so far, like the non-streaming endpoint does.
    assert follow_up[-1][1]["reply"]["text"] == stored[3].text and stored[3].seq == 4


def test_without_a_model_the_message_is_stored_and_an_error_event_follows(
    db: Session, client: TestClient
) -> None:
    cid, headers = start(client)
    got = events(stream(client, cid, headers, "hello there"))
    assert [kind for kind, _ in got] == ["message", "error"]
    assert got[1][1]["code"] == "no_model_deployed" and "deploy" in got[1][1]["detail"]
    assert [m.text for m in messages(db, cid)] == ["hello there"]
    assert got[0][1]["id"] == str(messages(db, cid)[0].id)


def test_handoffs_in_the_stream(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    with serving(settings, session_factory, handoff_threshold=1.0) as client:
        cid, headers = start(client)
        first = events(stream(client, cid, headers, "where is my order"))
        assert first[-1][0] == "reply" and first[-1][1]["handoff"] is True
        assert first[-1][1]["reply"]["handoff"] is True
        # Handed off: the customer message is stored, the bot stays quiet.
        second = events(stream(client, cid, headers, "hello?"))
    assert second == [("message", second[0][1]), ("reply", {"reply": None, "handoff": True})]
    stored = messages(db, cid)
    assert [m.role for m in stored] == ["customer", "assistant", "system", "customer"]
    assert stored[2].text == HANDOFF_NOTICE and stored[3].text == "hello?"


def test_stream_validates_and_authenticates_like_the_plain_endpoint(
    db: Session, client: TestClient
) -> None:
    cid, headers = start(client)
    empty = stream(client, cid, headers, "   ")
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_message"
    extra = client.post(
        f"/v1/widget/conversations/{cid}/messages/stream",
        json={"text": "hi", "other": 1},
        headers=headers,
    )
    assert extra.status_code == 422
    assert stream(client, cid, {}, "hi").status_code == 401
    other, _ = start(client)
    assert stream(client, other, headers, "hi").status_code == 403
    assert messages(db, cid) == []


def test_a_full_queue_answers_503_with_retry_after_and_recovers(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    # Static batches wait a 1 s window for companions: two waiting requests fill the queue.
    batching = SchedulerConfig(mode="static", max_queue=2, max_wait_s=1.0)
    app = create_app(settings, session_factory=session_factory, batching=batching)
    with TestClient(app) as client:
        batcher = client.app_state["batcher"]
        assert client.portal is not None
        portal = client.portal
        tickets = [
            portal.call(lambda: batcher.submit([("customer", "i want a refund")])) for _ in range(2)
        ]
        cid, headers = start(client)
        refused = post(client, cid, headers, "i want a refund")
        refused_stream = stream(client, cid, headers, "i want a refund")
        for response in (refused, refused_stream):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "overloaded"
            assert int(response.headers["Retry-After"]) >= 1
        done = [portal.call(ticket.result) for ticket in tickets]
        assert [d.reply.text for d in done] == ["we will refund you within five days"] * 2
        assert messages(db, cid) == []  # nothing stored: the client retries the same message
        again = post(client, cid, headers, "i want a refund")
        assert again.status_code == 201
        assert again.json()["reply"]["text"] == "we will refund you within five days"
