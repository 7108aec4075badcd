"""Shared helpers for the operator, admin and OpenAI-compatible API tests.

Everything here writes through the test's `db` session and only flushes: the rows live in the
test's transaction (rolled back afterwards) and the app sees them because it shares the connection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import (
    ApiKey,
    AuditEntry,
    Conversation,
    Message,
    MessageRole,
    Operator,
    OperatorRole,
    Rating,
)
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.operators import ApiKeyRepository, OperatorRepository

DEFAULT_PASSWORD = "correct horse battery staple"


def make_operator(
    db: Session,
    *,
    role: OperatorRole = OperatorRole.OPERATOR,
    password: str = DEFAULT_PASSWORD,
    email: str | None = None,
    name: str = "Test Operator",
    active: bool = True,
) -> tuple[Operator, str]:
    """A new operator with a unique e-mail; returns it with its plain password."""
    operator = OperatorRepository(db).create(
        email=email or f"op-{uuid.uuid4().hex[:12]}@example.com",
        name=name,
        password=password,
        role=role,
    )
    if not active:
        OperatorRepository(db).set_active(operator, False)
    db.flush()
    return operator, password


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, email: str, password: str) -> dict[str, str]:
    """Log in through the API and return the Authorization header."""
    response = client.post("/v1/operator/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return auth(response.json()["access_token"])


def operator_headers(
    db: Session, *, role: OperatorRole = OperatorRole.OPERATOR
) -> tuple[Operator, dict[str, str]]:
    """A new operator and a session token issued straight from the store (no login round trip,
    which keeps the suite fast; the login endpoint has its own tests)."""
    operator, _ = make_operator(db, role=role)
    issued = OperatorRepository(db).issue_session(operator, ttl=dt.timedelta(hours=1))
    db.flush()
    return operator, auth(issued.token)


def make_api_key(db: Session, name: str | None = None) -> tuple[ApiKey, str]:
    issued = ApiKeyRepository(db).create(name=name or f"key-{uuid.uuid4().hex[:8]}")
    db.flush()
    return issued.api_key, issued.key


def make_conversation(
    db: Session,
    *,
    created_at: dt.datetime | None = None,
    site: str | None = None,
    locale: str | None = None,
) -> Conversation:
    conversation = ConversationRepository(db).create(site=site, locale=locale)
    if created_at is not None:
        conversation.created_at = created_at
        db.flush()
    return conversation


def add_customer_message(
    db: Session,
    conversation: Conversation,
    text: str,
    *,
    intent: str | None = None,
    confidence: float | None = None,
    created_at: dt.datetime | None = None,
) -> Message:
    message = ConversationRepository(db).add_message(
        conversation,
        role=MessageRole.CUSTOMER,
        text=text,
        intent=intent,
        intent_confidence=confidence,
    )
    return _at(db, message, created_at)


def add_assistant_reply(
    db: Session,
    conversation: Conversation,
    text: str,
    *,
    intent: str | None = None,
    confidence: float | None = None,
    model_version: str | None = None,
    latency_ms: float | None = None,
    handoff: bool = False,
    created_at: dt.datetime | None = None,
) -> Message:
    message = ConversationRepository(db).add_message(
        conversation,
        role=MessageRole.ASSISTANT,
        text=text,
        intent=intent,
        intent_confidence=confidence,
        model_version=model_version,
        latency_ms=latency_ms,
        handoff=handoff,
    )
    return _at(db, message, created_at)


def _at(db: Session, message: Message, created_at: dt.datetime | None) -> Message:
    if created_at is not None:
        message.created_at = created_at
        db.flush()
    return message


def set_rating_time(db: Session, rating: Rating, at: dt.datetime) -> Rating:
    rating.created_at = at
    rating.updated_at = at
    db.flush()
    return rating


def audit_entries(
    db: Session, *, action: str | None = None, target_id: str | None = None
) -> list[AuditEntry]:
    """Audit rows as the database holds them now (newest first)."""
    db.expire_all()
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if target_id is not None:
        stmt = stmt.where(AuditEntry.target_id == target_id)
    return list(db.scalars(stmt))


def assert_error(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an error with the platform's envelope; returns the `error` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)
