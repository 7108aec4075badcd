"""Operator API: corrections of replies and intent labels, each audited."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import Correction, Message, OperatorRole
from tests.fixtures.operators import (
    add_assistant_reply,
    add_customer_message,
    assert_error,
    audit_entries,
    login,
    make_conversation,
    make_operator,
    operator_headers,
)

UTC = dt.UTC


# --- corrections and labels --------------------------------------------------------------------


@pytest.fixture
def exchange(db: Session) -> tuple[Message, Message]:
    conversation = make_conversation(db)
    customer = add_customer_message(db, conversation, "Where is my order?", intent="delivery")
    reply = add_assistant_reply(
        db, conversation, "It ships tomorrow", intent="delivery", model_version="mv-a"
    )
    return customer, reply


def _corrections(db: Session, message_id: uuid.UUID) -> list[Correction]:
    db.expire_all()
    return list(
        db.scalars(
            select(Correction)
            .where(Correction.message_id == message_id)
            .order_by(Correction.created_at)
        )
    )


def _correct(client: TestClient, db: Session, message_id: uuid.UUID, body: Any) -> Response:
    """POST a correction as a fresh operator; returns the response."""
    _, headers = operator_headers(db)
    return client.post(f"/v1/operator/messages/{message_id}/correction", headers=headers, json=body)


def _label(client: TestClient, db: Session, message_id: uuid.UUID, body: Any) -> Response:
    """POST an intent label as a fresh operator; returns the response."""
    _, headers = operator_headers(db)
    return client.post(f"/v1/operator/messages/{message_id}/intent", headers=headers, json=body)


def test_correct_reply_text(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    operator, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction",
        headers=headers,
        json={"corrected_text": "It ships today; write to help@example.com"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message_id"] == str(reply.id)
    assert body["operator_id"] == str(operator.id)
    # Corrected text is redacted like any stored text.
    assert body["corrected_text"] == "It ships today; write to [EMAIL]"
    assert body["corrected_intent"] is None
    assert body["exclude_from_training"] is False

    (row,) = _corrections(db, reply.id)
    assert str(row.id) == body["id"]
    assert row.conversation_id == reply.conversation_id
    assert row.corrected_text == "It ships today; write to [EMAIL]"

    (entry,) = audit_entries(db, action="message.correct", target_id=str(reply.id))
    assert entry.actor_type == "operator"
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "message"
    assert entry.details == {
        "correction_id": body["id"],
        "conversation_id": str(reply.conversation_id),
        "corrected_text": True,
        "corrected_intent": None,
        "previous_intent": "delivery",
        "exclude_from_training": False,
    }
    assert "help@example.com" not in str(entry.details)


def test_correct_reply_intent_only(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    response = _correct(client, db, reply.id, {"corrected_intent": "shipping"})
    assert response.status_code == 201, response.text
    assert response.json()["corrected_text"] is None
    assert response.json()["corrected_intent"] == "shipping"
    (entry,) = audit_entries(db, action="message.correct", target_id=str(reply.id))
    assert entry.details["corrected_text"] is False
    assert entry.details["corrected_intent"] == "shipping"
    assert entry.details["previous_intent"] == "delivery"
    # The predicted intent of the message itself stays as it was.
    db.refresh(reply)
    assert reply.intent == "delivery"


def test_correct_reply_text_and_intent_excluded_from_training(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    response = _correct(
        client,
        db,
        reply.id,
        {
            "corrected_text": "Better reply",
            "corrected_intent": "shipping",
            "exclude_from_training": True,
            "note": "rude",
        },
    )
    assert response.status_code == 201, response.text
    (row,) = _corrections(db, reply.id)
    assert (row.corrected_text, row.corrected_intent, row.exclude_from_training, row.note) == (
        "Better reply",
        "shipping",
        True,
        "rude",
    )
    (entry,) = audit_entries(db, action="message.correct")
    assert entry.details["exclude_from_training"] is True


def test_correct_reply_only_exclude_from_training(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    response = _correct(client, db, customer.id, {"exclude_from_training": True})
    assert response.status_code == 201, response.text
    assert len(audit_entries(db, action="message.correct")) == 1


def test_corrections_are_kept_as_history(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    for text in ("First try", "Second try"):
        response = client.post(
            f"/v1/operator/messages/{reply.id}/correction",
            headers=headers,
            json={"corrected_text": text},
        )
        assert response.status_code == 201
    assert [c.corrected_text for c in _corrections(db, reply.id)] == ["First try", "Second try"]
    assert len(audit_entries(db, action="message.correct", target_id=str(reply.id))) == 2


def test_correct_text_of_customer_message_conflicts(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    response = _correct(
        client,
        db,
        customer.id,
        {"corrected_text": "Where is my parcel?", "corrected_intent": "delivery"},
    )
    error = assert_error(response, 409, "conflict")
    assert "assistant" in error["message"]
    assert _corrections(db, customer.id) == []
    assert audit_entries(db, action="message.correct") == []


def test_correct_intent_of_customer_message_is_allowed(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    response = _correct(client, db, customer.id, {"corrected_intent": "complaint"})
    assert response.status_code == 201, response.text
    assert [c.corrected_intent for c in _corrections(db, customer.id)] == ["complaint"]
    assert len(audit_entries(db, action="message.correct", target_id=str(customer.id))) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"exclude_from_training": False},
        {"note": "only a note"},
    ],
)
def test_correction_without_a_change_is_422(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    _, reply = exchange
    response = _correct(client, db, reply.id, body)
    assert_error(response, 422)
    assert _corrections(db, reply.id) == []
    assert audit_entries(db, action="message.correct") == []


@pytest.mark.parametrize(
    "body",
    [
        {"corrected_text": ""},
        {"corrected_intent": ""},
        {"corrected_text": "x" * 10_001},
        {"corrected_intent": "x" * 121},
        {"corrected_text": "fine", "unexpected": 1},
    ],
)
def test_correction_invalid_body(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    _, reply = exchange
    response = _correct(client, db, reply.id, body)
    assert_error(response, 422, "validation_error")
    assert audit_entries(db, action="message.correct") == []


def test_correct_unknown_message(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    missing = uuid.uuid4()
    response = client.post(
        f"/v1/operator/messages/{missing}/correction",
        headers=headers,
        json={"corrected_text": "anything"},
    )
    error = assert_error(response, 404, "not_found")
    assert str(missing) in error["message"]
    assert audit_entries(db, action="message.correct") == []


def test_label_intent(client: TestClient, db: Session, exchange: tuple[Message, Message]) -> None:
    customer, _ = exchange
    operator, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/intent",
        headers=headers,
        json={"intent": "order_status", "note": "not delivery yet"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["corrected_intent"] == "order_status"
    assert body["corrected_text"] is None
    assert body["note"] == "not delivery yet"
    assert body["operator_id"] == str(operator.id)

    (row,) = _corrections(db, customer.id)
    assert row.corrected_intent == "order_status"
    (entry,) = audit_entries(db, action="message.label_intent", target_id=str(customer.id))
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "message"
    assert entry.details == {
        "correction_id": body["id"],
        "conversation_id": str(customer.conversation_id),
        "intent": "order_status",
        "previous_intent": "delivery",
    }


def test_label_intent_confirming_the_prediction(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    response = _label(client, db, reply.id, {"intent": "delivery"})
    assert response.status_code == 201
    (entry,) = audit_entries(db, action="message.label_intent")
    assert entry.details["intent"] == entry.details["previous_intent"] == "delivery"


@pytest.mark.parametrize(
    "body", [{}, {"intent": ""}, {"intent": "x" * 121}, {"intent": "a", "other": 1}]
)
def test_label_intent_invalid_body(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    customer, _ = exchange
    response = _label(client, db, customer.id, body)
    assert_error(response, 422, "validation_error")
    assert _corrections(db, customer.id) == []
    assert audit_entries(db, action="message.label_intent") == []


def test_label_intent_unknown_message(client: TestClient, db: Session) -> None:
    response = _label(client, db, uuid.uuid4(), {"intent": "x"})
    assert_error(response, 404, "not_found")
    assert audit_entries(db, action="message.label_intent") == []


def test_writes_are_visible_in_the_admin_audit_log(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, reply = exchange
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert (
        client.post(
            f"/v1/operator/messages/{reply.id}/correction",
            headers=headers,
            json={"corrected_text": "Fixed"},
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/v1/operator/messages/{customer.id}/intent", headers=headers, json={"intent": "x"}
        ).status_code
        == 201
    )
    assert client.post("/v1/operator/logout", headers=headers).status_code == 204

    entries = client.get("/v1/admin/audit", headers=admin_headers, params={"limit": 1000}).json()
    mine = [e for e in entries if e["actor_id"] == str(operator.id)]
    assert [e["action"] for e in mine] == [
        "operator.logout",
        "message.label_intent",
        "message.correct",
        "operator.login",
    ]
    assert all(e["actor_type"] == "operator" for e in mine)
