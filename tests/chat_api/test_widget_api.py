"""Widget endpoints against real PostgreSQL: success and failure paths, tokens, limits."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from chat_api.widget_tokens import WidgetTokenSigner
from feedback.models import Conversation, Message, Rating
from tests.conftest import TEST_SECRET
from tests.fixtures.widget import assistant_reply, start


def test_start_conversation_returns_bound_token(client: TestClient, db: Session) -> None:
    cid, headers = start(client, site="shop.example", locale="en-GB")
    row = db.get(Conversation, uuid.UUID(cid))
    assert row is not None and row.site == "shop.example" and row.locale == "en-GB"
    assert headers["Authorization"].startswith("Bearer wt1.")


def test_start_conversation_rejects_unknown_fields(client: TestClient) -> None:
    response = client.post("/v1/widget/conversations", json={"site": "x", "admin": True})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_post_message_without_model_stores_redacted_text_and_answers_503(
    client: TestClient, db: Session
) -> None:
    cid, headers = start(client)
    text = "My card 4111 1111 1111 1111 was charged twice, mail me at jo@example.com"
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages", json={"text": text}, headers=headers
    )
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "no_model_deployed"
    assert "chatdistill deploy" in body["error"]["message"]
    assert response.headers["Retry-After"] == "60"
    stored = db.get(Message, uuid.UUID(body["message_id"]))
    assert stored is not None
    assert stored.role == "customer"
    assert "4111" not in stored.text and "jo@example.com" not in stored.text
    assert "[CARD]" in stored.text and "[EMAIL]" in stored.text


def test_read_conversation_lists_messages_in_order(client: TestClient, db: Session) -> None:
    cid, headers = start(client)
    for text in ("first", "second"):
        client.post(
            f"/v1/widget/conversations/{cid}/messages", json={"text": text}, headers=headers
        )
    assistant_reply(db, cid)
    response = client.get(f"/v1/widget/conversations/{cid}", headers=headers)
    assert response.status_code == 200
    messages = response.json()["messages"]
    assert [m["text"] for m in messages] == ["first", "second", "Happy to help."]
    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert messages[2]["intent"] == "track_order" and messages[2]["model_version"] == "v-test"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": ""}, "validation_error"),
        ({"text": "   "}, "empty_message"),
        ({"text": "x" * 2001}, "message_too_long"),
        ({}, "validation_error"),
        ({"text": 42}, "validation_error"),
    ],
)
def test_post_message_rejects_bad_input(
    client: TestClient, db: Session, body: dict[str, Any], code: str
) -> None:
    cid, headers = start(client)
    response = client.post(f"/v1/widget/conversations/{cid}/messages", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert db.scalars(select(Message).where(Message.conversation_id == uuid.UUID(cid))).all() == []


def test_request_body_over_limit_is_413(client: TestClient) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages",
        content=b'{"text": "' + b"a" * 70_000 + b'"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    cid, headers = start(client)

    def chunks() -> Any:
        yield b'{"text": "'
        for _ in range(20):
            yield b"a" * 5000
        yield b'"}'

    response = client.post(
        f"/v1/widget/conversations/{cid}/messages",
        content=chunks(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_missing_token_is_401(client: TestClient) -> None:
    cid, _ = start(client)
    response = client.get(f"/v1/widget/conversations/{cid}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_forged_token_is_401(client: TestClient) -> None:
    cid, headers = start(client)
    forged = headers["Authorization"][:-4] + "AAAA"
    response = client.get(f"/v1/widget/conversations/{cid}", headers={"Authorization": forged})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_token_signed_with_another_key_is_401(client: TestClient) -> None:
    cid, _ = start(client)
    other = WidgetTokenSigner(b"another-key-0123456789", ttl=dt.timedelta(hours=1))
    token, _ = other.issue(uuid.UUID(cid))
    response = client.get(
        f"/v1/widget/conversations/{cid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_expired_token_is_401(client: TestClient) -> None:
    cid, _ = start(client)
    signer = WidgetTokenSigner(TEST_SECRET.encode(), ttl=dt.timedelta(hours=1))
    token, _ = signer.issue(uuid.UUID(cid), now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    response = client.get(
        f"/v1/widget/conversations/{cid}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_token_of_another_conversation_is_403_everywhere(client: TestClient, db: Session) -> None:
    cid_a, headers_a = start(client)
    cid_b, _ = start(client)
    reply_b = assistant_reply(db, cid_b)
    base = f"/v1/widget/conversations/{cid_b}"
    attempts = [
        ("get", base, None),
        ("post", f"{base}/messages", {"text": "hello"}),
        ("post", f"{base}/messages/{reply_b.id}/rating", {"thumbs": "down"}),
        ("post", f"{base}/csat", {"score": 1}),
        ("post", f"{base}/handoff", {}),
    ]
    for method, url, body in attempts:
        response = client.request(method, url, json=body, headers=headers_a)
        assert response.status_code == 403, (url, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    # Nothing was written to B.
    assert db.scalars(select(Rating).where(Rating.conversation_id == uuid.UUID(cid_b))).all() == []
    conversation_b = db.get(Conversation, uuid.UUID(cid_b))
    assert conversation_b is not None and conversation_b.message_count == 1
    assert not conversation_b.handed_off
    # A's own token still works for A.
    assert client.get(f"/v1/widget/conversations/{cid_a}", headers=headers_a).status_code == 200


def test_rating_a_message_of_another_conversation_with_own_token_is_404(
    client: TestClient, db: Session
) -> None:
    cid_a, headers_a = start(client)
    cid_b, _ = start(client)
    reply_b = assistant_reply(db, cid_b)
    response = client.post(
        f"/v1/widget/conversations/{cid_a}/messages/{reply_b.id}/rating",
        json={"thumbs": "up"},
        headers=headers_a,
    )
    assert response.status_code == 404


def test_accepted_rating_is_in_the_database_and_a_new_one_replaces_it(
    client: TestClient, db: Session
) -> None:
    cid, headers = start(client)
    reply = assistant_reply(db, cid)
    url = f"/v1/widget/conversations/{cid}/messages/{reply.id}/rating"
    first = client.post(
        url, json={"thumbs": "down", "comment": "call me on +44 20 7946 0958"}, headers=headers
    )
    assert first.status_code == 200, first.text
    assert first.json()["thumbs"] == "down"
    rows = db.scalars(select(Rating).where(Rating.message_id == reply.id)).all()
    assert len(rows) == 1 and rows[0].thumbs == -1
    assert rows[0].comment is not None and "7946" not in rows[0].comment

    second = client.post(url, json={"thumbs": "up", "csat": 5}, headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    db.expire_all()
    rows = db.scalars(select(Rating).where(Rating.message_id == reply.id)).all()
    assert len(rows) == 1
    assert (rows[0].thumbs, rows[0].csat, rows[0].comment) == (1, 5, None)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"thumbs": "sideways"}, 422),
        ({"csat": 0}, 422),
        ({"csat": 6}, 422),
        ({"thumbs": "up", "comment": "x" * 1001}, 422),
    ],
)
def test_bad_ratings_are_refused_and_store_nothing(
    client: TestClient, db: Session, body: dict[str, Any], status: int
) -> None:
    cid, headers = start(client)
    reply = assistant_reply(db, cid)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages/{reply.id}/rating", json=body, headers=headers
    )
    assert response.status_code == status
    assert "error" in response.json()
    assert db.scalars(select(Rating).where(Rating.message_id == reply.id)).all() == []


def test_rating_a_customer_message_is_409(client: TestClient, db: Session) -> None:
    cid, headers = start(client)
    posted = client.post(
        f"/v1/widget/conversations/{cid}/messages", json={"text": "hi"}, headers=headers
    )
    message_id = posted.json()["message_id"]
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages/{message_id}/rating",
        json={"thumbs": "up"},
        headers=headers,
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_rating_unknown_message_is_404(client: TestClient) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages/{uuid.uuid4()}/rating",
        json={"thumbs": "up"},
        headers=headers,
    )
    assert response.status_code == 404


def test_csat_is_stored_once_per_conversation(client: TestClient, db: Session) -> None:
    cid, headers = start(client)
    url = f"/v1/widget/conversations/{cid}/csat"
    assert client.post(url, json={"score": 2}, headers=headers).status_code == 200
    assert client.post(url, json={"score": 4, "comment": "ok"}, headers=headers).status_code == 200
    db.expire_all()
    rows = db.scalars(select(Rating).where(Rating.conversation_id == uuid.UUID(cid))).all()
    assert [(r.message_id, r.csat, r.comment) for r in rows] == [(None, 4, "ok")]
    assert client.post(url, json={"score": 9}, headers=headers).status_code == 422


def test_ask_for_human_flags_once_and_adds_a_notice(client: TestClient, db: Session) -> None:
    cid, headers = start(client)
    url = f"/v1/widget/conversations/{cid}/handoff"
    first = client.post(url, json={"reason": "wants a person"}, headers=headers)
    assert first.status_code == 200
    assert first.json()["handed_off"] is True and first.json()["message"]["role"] == "system"
    second = client.post(url, headers=headers)
    assert second.status_code == 200 and second.json()["message"] is None
    conversation = db.get(Conversation, uuid.UUID(cid))
    assert conversation is not None
    db.refresh(conversation)
    assert conversation.handed_off and conversation.handoff_reason == "wants a person"
    assert conversation.message_count == 1


def test_unknown_conversation_with_valid_signature_is_404(client: TestClient) -> None:
    ghost = uuid.uuid4()
    signer = WidgetTokenSigner(TEST_SECRET.encode(), ttl=dt.timedelta(hours=1))
    token, _ = signer.issue(ghost)
    response = client.get(
        f"/v1/widget/conversations/{ghost}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
