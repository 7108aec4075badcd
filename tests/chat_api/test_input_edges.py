"""Input at the API's edges, against the real app on PostgreSQL: NUL and other control
characters, blank-looking messages, booleans as scores, huge offsets and out-of-range dates are
refused with a 422 that names the field; nothing is stored and nothing becomes a 500."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedback.models import Conversation, Message, OperatorRole, Rating
from tests.fixtures.operators import (
    assert_error,
    auth,
    make_api_key,
    make_conversation,
    operator_headers,
)
from tests.fixtures.widget import assistant_reply, start


def assert_names_field(response: Any, field: str, code: str = "validation_error") -> None:
    """A 422 in the error envelope whose details point at `field`."""
    error = assert_error(response, 422, code)
    if code == "validation_error":
        fields = [d["loc"][-1] for d in error["details"]]
        assert field in fields, error
        assert field in error["message"], error


# --- widget: free text ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "\x00", "ring\x07", "esc\x1b[31m", "lone \ud800"])
def test_message_with_a_control_character_is_422_and_not_stored(
    client: TestClient, db: Session, bad: str
) -> None:
    cid, headers = start(client)
    # json.dumps escapes to ASCII, so a lone surrogate travels as the JSON escape "\\ud800".
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages",
        content=json.dumps({"text": bad}),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_names_field(response, "text")
    stored = db.scalars(select(Message).where(Message.conversation_id == uuid.UUID(cid)))
    assert stored.all() == []


def test_tab_newline_and_carriage_return_are_allowed(client: TestClient) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages",
        json={"text": "line one\r\n\tline two"},
        headers=headers,
    )
    # No model is deployed: the message is stored and the answer is 503, not a 422.
    assert response.status_code == 503, response.text


@pytest.mark.parametrize("blank", ["\u200b", " \u200c\u200d ", "\u2060\ufeff\n", "\ufeff\t"])
def test_message_of_only_zero_width_characters_is_empty(client: TestClient, blank: str) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages", json={"text": blank}, headers=headers
    )
    assert_names_field(response, "text", code="empty_message")


def test_site_and_locale_with_nul_are_422_and_no_conversation_starts(
    client: TestClient, db: Session
) -> None:
    before = db.scalar(select(func.count()).select_from(Conversation))
    for field in ("site", "locale"):
        response = client.post("/v1/widget/conversations", json={field: "shop\x00"})
        assert_names_field(response, field)
    assert db.scalar(select(func.count()).select_from(Conversation)) == before


def test_handoff_reason_with_nul_is_422(client: TestClient) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/handoff", json={"reason": "now\x00"}, headers=headers
    )
    assert_names_field(response, "reason")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"thumbs": "up", "comment": "fine\x00"}, "comment"),
        ({"csat": True}, "csat"),
        ({"csat": False}, "csat"),
        ({"thumbs": "down", "csat": 4.5}, "csat"),
    ],
)
def test_bad_rating_is_422_and_stores_nothing(
    client: TestClient, db: Session, body: dict[str, Any], field: str
) -> None:
    cid, headers = start(client)
    reply = assistant_reply(db, cid)
    response = client.post(
        f"/v1/widget/conversations/{cid}/messages/{reply.id}/rating", json=body, headers=headers
    )
    assert_names_field(response, field)
    assert db.scalars(select(Rating).where(Rating.message_id == reply.id)).all() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"score": True}, "score"), ({"score": 5, "comment": "\x00"}, "comment")],
)
def test_bad_csat_is_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    cid, headers = start(client)
    response = client.post(f"/v1/widget/conversations/{cid}/csat", json=body, headers=headers)
    assert_names_field(response, field)


def test_integer_csat_still_works(client: TestClient) -> None:
    cid, headers = start(client)
    response = client.post(
        f"/v1/widget/conversations/{cid}/csat", json={"score": 1}, headers=headers
    )
    assert response.status_code < 300, response.text


# --- operator: login, query parameters, path parameters -----------------------------------------


def test_login_email_with_nul_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/operator/login", json={"email": "a\x00@example.com", "password": "whatever"}
    )
    assert_names_field(response, "email")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "parcel\x00"}, "q"),
        ({"intent": "\x00"}, "intent"),
        ({"model_version": "v\x01"}, "model_version"),
        ({"offset": str(2**63)}, "offset"),
        ({"offset": "10000001"}, "offset"),
        ({"limit": str(2**70)}, "limit"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"until": "9999-12-31T23:00:00-14:00"}, "until"),
        ({"since": "1969-12-31T23:59:59Z"}, "since"),
        ({"until": "0500-01-01T00:00:00"}, "until"),
    ],
)
def test_conversation_list_refuses_bad_query(
    client: TestClient, db: Session, params: dict[str, str], field: str
) -> None:
    _, headers = operator_headers(db)
    response = client.get("/v1/operator/conversations", params=params, headers=headers)
    assert_names_field(response, field)


def test_conversation_list_accepts_the_edges_of_the_range(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    make_conversation(db)
    params = {"since": "1970-01-01T00:00:00Z", "until": "9999-12-31T00:00:00Z", "offset": "0"}
    response = client.get("/v1/operator/conversations", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["total"] >= 1


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/operator/metrics/summary", {"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ("/v1/operator/metrics/summary", {"model_version": "\x00"}, "model_version"),
        ("/v1/operator/metrics/series", {"until": "0001-01-01T00:00:00+01:00"}, "until"),
        ("/v1/operator/metrics/series", {"model_version": "v\x00"}, "model_version"),
    ],
)
def test_metrics_refuse_bad_query(
    client: TestClient, db: Session, path: str, params: dict[str, str], field: str
) -> None:
    _, headers = operator_headers(db)
    assert_names_field(client.get(path, params=params, headers=headers), field)


def test_correction_and_label_with_nul_are_422(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    conversation = make_conversation(db)
    reply = assistant_reply(db, str(conversation.id))
    base = f"/v1/operator/messages/{reply.id}"
    for path, body, field in [
        ("correction", {"corrected_text": "ok\x00"}, "corrected_text"),
        ("correction", {"corrected_intent": "x", "note": "\x00"}, "note"),
        ("intent", {"intent": "track\x00order"}, "intent"),
    ]:
        assert_names_field(client.post(f"{base}/{path}", json=body, headers=headers), field)


def test_approved_answer_intent_in_the_path_with_nul_is_422(
    client: TestClient, db: Session
) -> None:
    _, headers = operator_headers(db)
    response = client.put(
        "/v1/operator/approved-answers/track%00order", json={"text": "Hi"}, headers=headers
    )
    assert_names_field(response, "intent")


def test_admin_inputs_with_nul_are_422(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    for response, field in [
        (client.get("/v1/admin/audit", params={"action": "\x00"}, headers=headers), "action"),
        (client.get("/v1/admin/audit", params={"target_id": "\x00"}, headers=headers), "target_id"),
        (client.post("/v1/admin/api-keys", json={"name": "k\x00"}, headers=headers), "name"),
        (
            client.post(
                "/v1/admin/operators",
                json={"email": "n@example.com", "name": "N\x00", "password": "x" * 20},
                headers=headers,
            ),
            "name",
        ),
        (client.post("/v1/operator/runs", json={"reason": "\x00"}, headers=headers), "reason"),
        (
            client.post(
                "/v1/operator/models/v%00x/promote", json={"reason": "go"}, headers=headers
            ),
            "version_id",
        ),
    ]:
        assert_names_field(response, field)


def test_chat_completion_content_with_nul_is_422(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    body = {"messages": [{"role": "user", "content": "hi\x00"}]}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    assert_names_field(response, "content")
