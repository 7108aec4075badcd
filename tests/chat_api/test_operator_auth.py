"""Operator API: login, bearer tokens (missing, garbage, revoked, expired), /me."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import OperatorRole, OperatorSession, utcnow
from feedback.repositories.operators import OperatorRepository
from feedback.settings import Settings
from tests.fixtures.operators import (
    assert_error,
    audit_entries,
    auth,
    login,
    make_api_key,
    make_operator,
    operator_headers,
)

UTC = dt.UTC


# --- login -------------------------------------------------------------------------------------


def test_login_returns_a_working_token_and_is_audited(
    client: TestClient, db: Session, settings: Settings
) -> None:
    operator, password = make_operator(db, name="Ada")
    before = utcnow()

    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": password}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].startswith("cdo_")
    assert body["operator"]["id"] == str(operator.id)
    assert body["operator"]["email"] == operator.email
    assert body["operator"]["role"] == "operator"
    assert body["operator"]["active"] is True
    assert body["operator"]["last_login_at"] is not None
    assert "password_hash" not in body["operator"]
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    ttl = dt.timedelta(minutes=settings.auth.operator_token_ttl_minutes)
    assert before + ttl - dt.timedelta(seconds=5) <= expires_at <= utcnow() + ttl

    me = client.get("/v1/operator/me", headers=auth(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == str(operator.id)

    db.refresh(operator)
    assert operator.last_login_at is not None and operator.last_login_at >= before
    # Only the token's hash is stored.
    sessions = db.scalars(
        select(OperatorSession).where(OperatorSession.operator_id == operator.id)
    ).all()
    assert len(sessions) == 1
    assert sessions[0].token_hash != body["access_token"]
    assert body["access_token"] not in sessions[0].token_hash

    (entry,) = audit_entries(db, action="operator.login", target_id=str(operator.id))
    assert entry.actor_type == "operator"
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "operator"
    assert entry.details == {"ip": "testclient"}


def test_login_email_is_case_and_space_insensitive(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db, email="mixed.case@example.com")
    response = client.post(
        "/v1/operator/login", json={"email": "  Mixed.Case@EXAMPLE.com ", "password": password}
    )
    assert response.status_code == 200, response.text
    assert response.json()["operator"]["id"] == str(operator.id)


def test_login_wrong_password(client: TestClient, db: Session) -> None:
    operator, _ = make_operator(db)
    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": "not the password!"}
    )
    error = assert_error(response, 401, "login_failed")
    assert "wrong e-mail or password" in error["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert audit_entries(db, action="operator.login") == []
    db.refresh(operator)
    assert operator.last_login_at is None


def test_login_unknown_email_looks_like_a_wrong_password(client: TestClient, db: Session) -> None:
    operator, _ = make_operator(db)
    wrong_password = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": "x" * 20}
    )
    unknown = client.post(
        "/v1/operator/login", json={"email": "nobody@example.com", "password": "x" * 20}
    )
    error = assert_error(unknown, 401, "login_failed")
    # No account enumeration: the same answer as for a wrong password.
    assert error == wrong_password.json()["error"]
    assert audit_entries(db, action="operator.login") == []


def test_login_deactivated_operator(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db, active=False)
    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": password}
    )
    error = assert_error(response, 401, "login_failed")
    assert "deactivated" in error["message"]
    assert (
        db.scalars(select(OperatorSession).where(OperatorSession.operator_id == operator.id)).all()
        == []
    )
    assert audit_entries(db, action="operator.login") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com"},
        {"password": "x" * 12},
        {"email": "a@example.com", "password": "x" * 12, "remember": True},
        {"email": "a@example.com", "password": "x" * 1025},
    ],
)
def test_login_invalid_body(client: TestClient, body: dict[str, Any]) -> None:
    error = assert_error(client.post("/v1/operator/login", json=body), 422, "validation_error")
    assert error["details"]


@pytest.mark.usefixtures("steady_minute")
def test_login_is_rate_limited_per_ip(client: TestClient, db: Session, settings: Settings) -> None:
    limit = settings.rate_limit.logins_per_ip_per_minute
    # A new e-mail each time: one e-mail would be locked by the per-account lockout first
    # (tests/chat_api/test_login_lockout.py).
    for n in range(limit):
        body = {"email": f"nobody{n}@example.com", "password": "x" * 12}
        assert client.post("/v1/operator/login", json=body).status_code == 401
    response = client.post(
        "/v1/operator/login", json={"email": "nobody@example.com", "password": "x" * 12}
    )
    error = assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert error["retry_after"] == retry_after


# --- tokens ------------------------------------------------------------------------------------


def test_missing_token(client: TestClient) -> None:
    response = client.get("/v1/operator/me")
    error = assert_error(response, 401, "unauthorized")
    assert "login" in error["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer garbage", "Bearer cdo_" + "A" * 43, "Basic dXNlcjpwYXNz", "cdo_abc"],
)
def test_garbage_token(client: TestClient, header: str) -> None:
    response = client.get("/v1/operator/me", headers={"Authorization": header})
    assert_error(response, 401)


def test_unknown_bearer_token_is_invalid_token(client: TestClient) -> None:
    error = assert_error(client.get("/v1/operator/me", headers=auth("garbage")), 401)
    assert error["code"] == "invalid_token"


def test_logout_revokes_the_token_only(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    first = login(client, operator.email, password)
    second = login(client, operator.email, password)

    response = client.post("/v1/operator/logout", headers=first)
    assert response.status_code == 204
    assert response.content == b""

    error = assert_error(client.get("/v1/operator/me", headers=first), 401, "invalid_token")
    assert "revoked" in error["message"]
    # Another session of the same operator is untouched.
    assert client.get("/v1/operator/me", headers=second).status_code == 200
    # Logging out again with the revoked token is refused.
    assert_error(client.post("/v1/operator/logout", headers=first), 401, "invalid_token")

    (entry,) = audit_entries(db, action="operator.logout")
    assert entry.actor_id == str(operator.id)
    assert entry.target_id == str(operator.id)
    db.expire_all()
    revoked = db.scalars(
        select(OperatorSession).where(
            OperatorSession.operator_id == operator.id, OperatorSession.revoked_at.is_not(None)
        )
    ).all()
    assert len(revoked) == 1


@pytest.mark.parametrize("ttl", [dt.timedelta(seconds=-1), dt.timedelta(0)])
def test_expired_token_from_issue_session(
    client: TestClient, db: Session, ttl: dt.timedelta
) -> None:
    operator, _ = make_operator(db)
    issued = OperatorRepository(db).issue_session(operator, ttl=ttl)
    db.flush()
    error = assert_error(
        client.get("/v1/operator/me", headers=auth(issued.token)), 401, "invalid_token"
    )
    assert "expired" in error["message"]


def test_token_expires_when_expires_at_passes(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    assert client.get("/v1/operator/me", headers=headers).status_code == 200

    (op_session,) = db.scalars(
        select(OperatorSession).where(OperatorSession.operator_id == operator.id)
    ).all()
    op_session.expires_at = utcnow() - dt.timedelta(seconds=1)
    db.flush()

    error = assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    assert "expired" in error["message"]


def test_token_of_deactivated_operator_stops_working(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    db.refresh(operator)
    operator.active = False  # directly, without revoking sessions: the check must still hold
    db.flush()
    error = assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    assert "deactivated" in error["message"]


def test_api_key_is_not_an_operator_token(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    assert_error(client.get("/v1/operator/me", headers=auth(key)), 401, "invalid_token")


FIXED_ID = "7d3f1c2a-0000-4000-8000-000000000001"  # fixed: xdist needs stable test ids


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/operator/me", None),
        ("POST", "/v1/operator/logout", None),
        ("GET", "/v1/operator/conversations", None),
        ("GET", f"/v1/operator/conversations/{FIXED_ID}", None),
        ("POST", f"/v1/operator/messages/{FIXED_ID}/correction", {"corrected_intent": "x"}),
        ("POST", f"/v1/operator/messages/{FIXED_ID}/intent", {"intent": "x"}),
        ("GET", "/v1/operator/metrics/summary", None),
        ("GET", "/v1/operator/models", None),
    ],
)
def test_every_operator_endpoint_needs_a_token(
    client: TestClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    assert_error(client.request(method, path, json=body), 401, "unauthorized")


def test_me(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    body = client.get("/v1/operator/me", headers=headers).json()
    assert body["id"] == str(admin.id)
    assert body["email"] == admin.email
    assert body["name"] == admin.name
    assert body["role"] == "admin"
    assert body["active"] is True
    assert set(body) == {"id", "email", "name", "role", "active", "created_at", "last_login_at"}
