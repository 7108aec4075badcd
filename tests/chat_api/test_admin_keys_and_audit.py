"""The admin API against real PostgreSQL: API keys and the audit log (operators and access
control are in test_admin_api.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from feedback.credentials import hash_token
from feedback.models import ActorType, ApiKey, OperatorRole
from feedback.repositories.audit import AuditRepository
from tests.fixtures.operators import (
    DEFAULT_PASSWORD,
    assert_error,
    audit_entries,
    auth,
    make_api_key,
    operator_headers,
)

# --- API keys ----------------------------------------------------------------------------------


def test_create_api_key_shows_the_key_once(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post("/v1/admin/api-keys", headers=headers, json={"name": "  crm-sync  "})
    assert response.status_code == 201, response.text
    body = response.json()
    key = body["key"]
    assert key.startswith("cdk_")
    assert len(key) > 40
    assert body["name"] == "crm-sync"
    assert body["prefix"] == key[:10]
    assert body["revoked_at"] is None
    assert body["last_used_at"] is None

    row = db.get(ApiKey, uuid.UUID(body["id"]))
    assert row is not None
    assert row.key_hash == hash_token(key)
    assert row.created_by == admin.id
    # Nowhere in the stored row is the plain key.
    raw = db.execute(
        text("SELECT * FROM api_keys WHERE id = :id"), {"id": uuid.UUID(body["id"])}
    ).one()
    assert all(key not in str(value) for value in raw)

    (entry,) = audit_entries(db, action="api_key.create")
    assert entry.actor_id == str(admin.id)
    assert entry.target_type == "api_key"
    assert entry.target_id == body["id"]
    assert entry.details == {"name": "crm-sync", "prefix": key[:10]}
    assert key not in str(entry.details)

    # Listing never shows the secret again.
    listed = client.get("/v1/admin/api-keys", headers=headers).json()
    (item,) = [k for k in listed if k["id"] == body["id"]]
    assert set(item) == {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at"}
    assert key not in response.text.replace(key, "", 1)
    assert key not in str(listed)

    # The key works.
    assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_list_api_keys_shows_use_and_revocation(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    used, used_key = make_api_key(db, "used-key")
    unused, _ = make_api_key(db, "unused-key")
    assert client.get("/v1/models", headers=auth(used_key)).status_code == 200
    assert client.delete(f"/v1/admin/api-keys/{unused.id}", headers=headers).status_code == 204

    listed = {k["name"]: k for k in client.get("/v1/admin/api-keys", headers=headers).json()}
    assert listed["used-key"]["last_used_at"] is not None
    assert listed["used-key"]["revoked_at"] is None
    assert listed["unused-key"]["last_used_at"] is None
    assert listed["unused-key"]["revoked_at"] is not None
    assert listed["used-key"]["id"] == str(used.id)


def test_create_api_key_duplicate_name(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    make_api_key(db, "dup-name")
    response = client.post("/v1/admin/api-keys", headers=headers, json={"name": "dup-name"})
    assert_error(response, 409, "conflict")
    assert audit_entries(db, action="api_key.create") == []


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 101}, {"name": "a", "b": 1}])
def test_create_api_key_invalid_body(client: TestClient, db: Session, body: dict[str, Any]) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert_error(
        client.post("/v1/admin/api-keys", headers=headers, json=body), 422, "validation_error"
    )


def test_create_api_key_blank_name(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post("/v1/admin/api-keys", headers=headers, json={"name": "   "})
    assert_error(response, 422)
    assert audit_entries(db, action="api_key.create") == []


def test_revoke_api_key(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    created = client.post("/v1/admin/api-keys", headers=headers, json={"name": "to-revoke"})
    key_id, key = created.json()["id"], created.json()["key"]
    assert client.get("/v1/models", headers=auth(key)).status_code == 200

    response = client.delete(f"/v1/admin/api-keys/{key_id}", headers=headers)
    assert response.status_code == 204
    assert response.content == b""

    error = assert_error(client.get("/v1/models", headers=auth(key)), 401, "invalid_api_key")
    assert "revoked" in error["message"]
    assert_error(
        client.post(
            "/v1/chat/completions",
            headers=auth(key),
            json={"messages": [{"role": "user", "content": "hi"}]},
        ),
        401,
        "invalid_api_key",
    )
    db.expire_all()
    row = db.get(ApiKey, uuid.UUID(key_id))
    assert row is not None and row.revoked_at is not None
    (entry,) = audit_entries(db, action="api_key.revoke")
    assert entry.actor_id == str(admin.id)
    assert entry.target_id == key_id
    assert entry.details == {"name": "to-revoke"}

    # Revoking again keeps the first revocation time.
    first_revoked_at = row.revoked_at
    assert client.delete(f"/v1/admin/api-keys/{key_id}", headers=headers).status_code == 204
    db.expire_all()
    assert db.get(ApiKey, uuid.UUID(key_id)).revoked_at == first_revoked_at  # type: ignore[union-attr]


def test_revoke_unknown_api_key(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert_error(client.delete(f"/v1/admin/api-keys/{uuid.uuid4()}", headers=headers), 404)
    assert_error(client.delete("/v1/admin/api-keys/nope", headers=headers), 422)
    assert audit_entries(db, action="api_key.revoke") == []


# --- audit log ---------------------------------------------------------------------------------


def test_audit_log_lists_newest_first_with_filters(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    first = client.post("/v1/admin/api-keys", headers=headers, json={"name": "audit-a"}).json()
    second = client.post("/v1/admin/api-keys", headers=headers, json={"name": "audit-b"}).json()
    assert client.delete(f"/v1/admin/api-keys/{first['id']}", headers=headers).status_code == 204
    created = client.post(
        "/v1/admin/operators",
        headers=headers,
        json={"email": "audited@example.com", "name": "Audited", "password": DEFAULT_PASSWORD},
    ).json()

    response = client.get("/v1/admin/audit", headers=headers, params={"limit": 1000})
    assert response.status_code == 200
    entries = [e for e in response.json() if e["actor_id"] == str(admin.id)]
    assert [(e["action"], e["target_id"]) for e in entries] == [
        ("operator.create", created["id"]),
        ("api_key.revoke", first["id"]),
        ("api_key.create", second["id"]),
        ("api_key.create", first["id"]),
    ]
    ids = [e["id"] for e in response.json()]
    assert ids == sorted(ids, reverse=True)
    top = entries[0]
    assert top["actor_type"] == "operator"
    assert top["target_type"] == "operator"
    assert top["details"] == {"email": "audited@example.com", "role": "operator"}
    assert top["at"]

    by_action = client.get(
        "/v1/admin/audit", headers=headers, params={"action": "api_key.create", "limit": 1000}
    ).json()
    assert {e["action"] for e in by_action} == {"api_key.create"}
    assert [e["target_id"] for e in by_action][:2] == [second["id"], first["id"]]

    by_target = client.get(
        "/v1/admin/audit", headers=headers, params={"target_id": first["id"]}
    ).json()
    assert [e["action"] for e in by_target] == ["api_key.revoke", "api_key.create"]

    both = client.get(
        "/v1/admin/audit",
        headers=headers,
        params={"target_id": first["id"], "action": "api_key.revoke"},
    ).json()
    assert [e["action"] for e in both] == ["api_key.revoke"]

    limited = client.get("/v1/admin/audit", headers=headers, params={"limit": 2}).json()
    assert [e["id"] for e in limited] == ids[:2]

    none = client.get("/v1/admin/audit", headers=headers, params={"action": "no.such"}).json()
    assert none == []


def test_audit_log_shows_system_entries(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    AuditRepository(db).record(
        actor_type=ActorType.SYSTEM,
        actor_id=None,
        action="model.promote",
        target_type="model_version",
        target_id="student-9",
        details={"reason": "better"},
    )
    db.flush()
    (entry,) = client.get(
        "/v1/admin/audit", headers=headers, params={"target_id": "student-9"}
    ).json()
    assert entry["actor_type"] == "system"
    assert entry["actor_id"] is None
    assert entry["action"] == "model.promote"
    assert entry["details"] == {"reason": "better"}


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"action": "x" * 81}, {"target_id": "x" * 121}]
)
def test_audit_log_invalid_query(client: TestClient, db: Session, params: dict[str, Any]) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert_error(
        client.get("/v1/admin/audit", headers=headers, params=params), 422, "validation_error"
    )
