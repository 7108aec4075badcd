"""The admin API against real PostgreSQL: access control and operators (API keys and the audit
log are in test_admin_keys_and_audit.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.credentials import verify_password
from feedback.models import ApiKey, Operator, OperatorRole, OperatorSession
from tests.fixtures.operators import (
    assert_error,
    audit_entries,
    auth,
    login,
    make_api_key,
    make_operator,
    operator_headers,
)

ADMIN_ENDPOINTS = [
    ("GET", "/v1/admin/operators", None),
    ("POST", "/v1/admin/operators", {"email": "x@example.com", "name": "X", "password": "p" * 16}),
    ("PATCH", "/v1/admin/operators/7d3f1c2a-0000-4000-8000-000000000002", {"active": False}),
    ("GET", "/v1/admin/api-keys", None),
    ("POST", "/v1/admin/api-keys", {"name": "sneaky"}),
    ("DELETE", "/v1/admin/api-keys/7d3f1c2a-0000-4000-8000-000000000003", None),
    ("GET", "/v1/admin/audit", None),
]


# --- access ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_operator_role_gets_403(
    client: TestClient, db: Session, method: str, path: str, body: dict[str, Any] | None
) -> None:
    _, headers = operator_headers(db, role=OperatorRole.OPERATOR)
    before = len(audit_entries(db))
    response = client.request(method, path, headers=headers, json=body)
    error = assert_error(response, 403, "forbidden")
    assert "admin" in error["message"]
    assert len(audit_entries(db)) == before
    assert db.scalar(select(ApiKey).where(ApiKey.name == "sneaky")) is None
    assert db.scalar(select(Operator).where(Operator.email == "x@example.com")) is None


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_admin_endpoints_need_a_token(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    assert_error(client.request(method, path, json=body), 401, "unauthorized")
    assert_error(
        client.request(method, path, json=body, headers=auth("cdo_nope")), 401, "invalid_token"
    )


def test_api_key_cannot_use_admin_endpoints(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    assert_error(client.get("/v1/admin/operators", headers=auth(key)), 401, "invalid_token")


# --- operators ---------------------------------------------------------------------------------


def test_create_operator(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    password = "a long enough password"
    response = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": "  New.Person@Example.COM ", "name": "New Person", "password": password},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["name"] == "New Person"
    assert body["role"] == "operator"
    assert body["active"] is True
    assert body["last_login_at"] is None
    assert "password" not in body and "password_hash" not in body

    row = db.get(Operator, uuid.UUID(body["id"]))
    assert row is not None
    assert row.password_hash != password
    assert password not in row.password_hash
    assert verify_password(password, row.password_hash)

    (entry,) = audit_entries(db, action="operator.create")
    assert entry.actor_type == "operator"
    assert entry.actor_id == str(admin.id)
    assert entry.target_type == "operator"
    assert entry.target_id == body["id"]
    assert entry.details == {"email": "new.person@example.com", "role": "operator"}
    assert password not in str(entry.details)

    # The new operator can log in with that password.
    me = client.get("/v1/operator/me", headers=login(client, "new.person@example.com", password))
    assert me.json()["id"] == body["id"]


def test_create_admin(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": "boss@example.com", "name": "Boss", "password": "p" * 12, "role": "admin"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "admin"
    new_headers = login(client, "boss@example.com", "p" * 12)
    assert client.get("/v1/admin/operators", headers=new_headers).status_code == 200


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@example.com", " taken@EXAMPLE.com"])
def test_create_operator_duplicate_email(client: TestClient, db: Session, email: str) -> None:
    make_operator(db, email="taken@example.com")
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": email, "name": "Dup", "password": "p" * 16},
    )
    error = assert_error(response, 409, "conflict")
    assert "taken@example.com" in error["message"]
    assert audit_entries(db, action="operator.create") == []
    assert db.scalars(select(Operator).where(Operator.email == "taken@example.com")).all()


def test_create_operator_short_password(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": "short@example.com", "name": "Short", "password": "p" * 11},
    )
    error = assert_error(response, 422)
    assert "12" in error["message"]
    assert db.scalar(select(Operator).where(Operator.email == "short@example.com")) is None
    assert audit_entries(db, action="operator.create") == []


@pytest.mark.parametrize(
    "email", ["not-an-email", "two@@example.com", "no@tld", "spaces in@example.com", ""]
)
def test_create_operator_bad_email(client: TestClient, db: Session, email: str) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": email, "name": "Bad", "password": "p" * 16},
    )
    assert_error(response, 422)
    assert audit_entries(db, action="operator.create") == []


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "password": "p" * 16},
        {"email": "a@example.com", "name": "", "password": "p" * 16},
        {"email": "a@example.com", "name": "A", "password": "p" * 16, "role": "root"},
        {"email": "a@example.com", "name": "A", "password": "p" * 16, "active": False},
        {"name": "A", "password": "p" * 16},
    ],
)
def test_create_operator_invalid_body(
    client: TestClient, db: Session, body: dict[str, Any]
) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post("/v1/admin/operators", headers=headers, json=body)
    assert_error(response, 422, "validation_error")
    assert db.scalar(select(Operator).where(Operator.email == "a@example.com")) is None


def test_list_operators(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    other, _ = make_operator(db, name="Other", active=False)
    response = client.get("/v1/admin/operators", headers=headers)
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()}
    assert by_id[str(admin.id)]["role"] == "admin"
    assert by_id[str(other.id)]["active"] is False
    assert by_id[str(other.id)]["name"] == "Other"
    for item in by_id.values():
        assert set(item) == {"id", "email", "name", "role", "active", "created_at", "last_login_at"}


def test_deactivate_operator_revokes_their_tokens(client: TestClient, db: Session) -> None:
    admin, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    assert client.get("/v1/operator/me", headers=headers).status_code == 200

    response = client.patch(
        f"/v1/admin/operators/{operator.id}", headers=admin_headers, json={"active": False}
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False

    assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    assert_error(
        client.post("/v1/operator/login", json={"email": operator.email, "password": password}),
        401,
        "login_failed",
    )
    db.expire_all()
    assert db.get(Operator, operator.id).active is False  # type: ignore[union-attr]
    sessions = db.scalars(
        select(OperatorSession).where(OperatorSession.operator_id == operator.id)
    ).all()
    assert sessions and all(s.revoked_at is not None for s in sessions)

    (entry,) = audit_entries(db, action="operator.update", target_id=str(operator.id))
    assert entry.actor_id == str(admin.id)
    assert entry.details == {"active": {"from": True, "to": False}}

    # Reactivated: the old token stays revoked, a new login works.
    response = client.patch(
        f"/v1/admin/operators/{operator.id}", headers=admin_headers, json={"active": True}
    )
    assert response.json()["active"] is True
    assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    fresh = login(client, operator.email, password)
    assert client.get("/v1/operator/me", headers=fresh).status_code == 200
    entries = audit_entries(db, action="operator.update", target_id=str(operator.id))
    assert [e.details for e in entries] == [
        {"active": {"from": False, "to": True}},
        {"active": {"from": True, "to": False}},
    ]


def test_promote_and_demote(client: TestClient, db: Session) -> None:
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    operator, headers = operator_headers(db)
    assert_error(client.get("/v1/admin/operators", headers=headers), 403, "forbidden")

    response = client.patch(
        f"/v1/admin/operators/{operator.id}", headers=admin_headers, json={"role": "admin"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"
    # The same token now carries the new role.
    assert client.get("/v1/admin/operators", headers=headers).status_code == 200

    response = client.patch(
        f"/v1/admin/operators/{operator.id}", headers=admin_headers, json={"role": "operator"}
    )
    assert response.json()["role"] == "operator"
    assert_error(client.get("/v1/admin/operators", headers=headers), 403, "forbidden")

    entries = audit_entries(db, action="operator.update", target_id=str(operator.id))
    assert [e.details for e in entries] == [
        {"role": {"from": "admin", "to": "operator"}},
        {"role": {"from": "operator", "to": "admin"}},
    ]
    db.expire_all()
    assert db.get(Operator, operator.id).role == "operator"  # type: ignore[union-attr]


def test_role_and_active_in_one_patch(client: TestClient, db: Session) -> None:
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    operator, _ = make_operator(db)
    response = client.patch(
        f"/v1/admin/operators/{operator.id}",
        headers=admin_headers,
        json={"role": "admin", "active": False},
    )
    assert response.status_code == 200
    assert (response.json()["role"], response.json()["active"]) == ("admin", False)
    (entry,) = audit_entries(db, action="operator.update", target_id=str(operator.id))
    assert entry.details == {
        "role": {"from": "operator", "to": "admin"},
        "active": {"from": True, "to": False},
    }


def test_patch_without_a_change_is_not_audited(client: TestClient, db: Session) -> None:
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    operator, _ = make_operator(db)
    for body in ({}, {"active": True}, {"role": "operator"}, {"active": None, "role": None}):
        response = client.patch(
            f"/v1/admin/operators/{operator.id}", headers=admin_headers, json=body
        )
        assert response.status_code == 200, response.text
        assert response.json()["active"] is True
        assert response.json()["role"] == "operator"
    assert audit_entries(db, action="operator.update") == []


@pytest.mark.parametrize(
    "body",
    [{"active": False}, {"role": "operator"}, {"active": False, "role": "admin"}],
)
def test_admin_cannot_deactivate_or_demote_themself(
    client: TestClient, db: Session, body: dict[str, Any]
) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.patch(f"/v1/admin/operators/{admin.id}", headers=headers, json=body)
    error = assert_error(response, 409, "conflict")
    assert "yourself" in error["message"]
    db.expire_all()
    row = db.get(Operator, admin.id)
    assert row is not None and row.active is True and row.role == "admin"
    assert client.get("/v1/admin/operators", headers=headers).status_code == 200
    assert audit_entries(db, action="operator.update") == []


def test_admin_may_patch_themself_harmlessly(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.patch(
        f"/v1/admin/operators/{admin.id}", headers=headers, json={"active": True, "role": "admin"}
    )
    assert response.status_code == 200, response.text
    assert audit_entries(db, action="operator.update") == []


def test_admin_can_deactivate_another_admin(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    other, other_headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.patch(
        f"/v1/admin/operators/{other.id}", headers=headers, json={"active": False}
    )
    assert response.status_code == 200
    assert_error(client.get("/v1/admin/operators", headers=other_headers), 401, "invalid_token")


def test_patch_unknown_operator(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    missing = uuid.uuid4()
    response = client.patch(f"/v1/admin/operators/{missing}", headers=headers, json={})
    error = assert_error(response, 404, "not_found")
    assert str(missing) in error["message"]


@pytest.mark.parametrize(
    "body", [{"role": "superuser"}, {"active": "sometimes"}, {"email": "new@example.com"}]
)
def test_patch_invalid_body(client: TestClient, db: Session, body: dict[str, Any]) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    operator, _ = make_operator(db)
    response = client.patch(f"/v1/admin/operators/{operator.id}", headers=headers, json=body)
    assert_error(response, 422, "validation_error")
