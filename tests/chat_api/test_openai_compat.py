"""The OpenAI-compatible API against real PostgreSQL: API key auth, /v1/models, and
/v1/chat/completions while no model is deployed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from feedback.models import ApiKey, utcnow
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.operators import ApiKeyRepository
from tests.fixtures.operators import (
    assert_error,
    audit_entries,
    auth,
    login,
    make_api_key,
    make_operator,
    operator_headers,
)

CHAT = {"messages": [{"role": "user", "content": "Where is my order?"}]}


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
)
def test_missing_api_key(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json=CHAT if method == "POST" else None)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
)
@pytest.mark.parametrize("key", ["garbage", "cdk_" + "A" * 43])
def test_invalid_api_key(client: TestClient, method: str, path: str, key: str) -> None:
    response = client.request(
        method, path, headers=auth(key), json=CHAT if method == "POST" else None
    )
    error = assert_error(response, 401, "invalid_api_key")
    assert "invalid API key" in error["message"]


def test_a_different_key_with_the_same_prefix_is_refused(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    forged = key[:10] + ("B" if key[10] != "B" else "C") + key[11:]
    assert_error(client.get("/v1/models", headers=auth(forged)), 401, "invalid_api_key")
    assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_revoked_api_key(client: TestClient, db: Session) -> None:
    api_key, key = make_api_key(db)
    assert client.get("/v1/models", headers=auth(key)).status_code == 200
    ApiKeyRepository(db).revoke(db.get(ApiKey, api_key.id))  # type: ignore[arg-type]
    db.flush()
    error = assert_error(client.get("/v1/models", headers=auth(key)), 401, "invalid_api_key")
    assert "revoked" in error["message"]
    assert_error(
        client.post("/v1/chat/completions", headers=auth(key), json=CHAT), 401, "invalid_api_key"
    )


def test_operator_session_token_is_not_an_api_key(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    assert client.get("/v1/operator/me", headers=headers).status_code == 200
    assert_error(client.get("/v1/models", headers=headers), 401, "invalid_api_key")
    assert_error(
        client.post("/v1/chat/completions", headers=headers, json=CHAT), 401, "invalid_api_key"
    )
    _, issued = operator_headers(db)
    assert_error(client.get("/v1/models", headers=issued), 401, "invalid_api_key")


def test_list_models(client: TestClient, db: Session) -> None:
    repo = ModelVersionRepository(db)
    first = repo.register(
        version_id="student-oa-1", bundle_uri="file:///bundles/oa-1", checksum="1" * 64
    )
    second = repo.register(
        version_id="student-oa-2", bundle_uri="file:///bundles/oa-2", checksum="2" * 64
    )
    first.created_at = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    second.created_at = utcnow()
    repo.set_alias(PRODUCTION, "student-oa-1")
    db.flush()
    api_key, key = make_api_key(db)

    response = client.get("/v1/models", headers=auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    mine = [card for card in body["data"] if card["id"].startswith("student-oa-")]
    assert [card["id"] for card in mine] == ["student-oa-2", "student-oa-1"]  # newest first
    assert mine[1] == {
        "id": "student-oa-1",
        "object": "model",
        "created": int(dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()),
        "owned_by": "chatdistill",
    }
    assert abs(mine[0]["created"] - int(second.created_at.timestamp())) <= 1
    for card in body["data"]:
        assert set(card) == {"id", "object", "created", "owned_by"}

    # Using the key is recorded, and nothing is audited for a read.
    db.expire_all()
    row = db.get(ApiKey, api_key.id)
    assert row is not None and row.last_used_at is not None
    assert audit_entries(db, target_id=str(api_key.id)) == []


def test_list_models_empty_registry(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    response = client.get("/v1/models", headers=auth(key))
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert response.json()["data"] == []


@pytest.mark.parametrize("with_production", [False, True])
def test_chat_completion_without_a_deployed_model(
    client: TestClient, db: Session, with_production: bool
) -> None:
    if with_production:
        # A registered production alias is not a running model: still 503.
        repo = ModelVersionRepository(db)
        repo.register(version_id="student-oa-p", bundle_uri="file:///b", checksum="3" * 64)
        repo.set_alias(PRODUCTION, "student-oa-p")
        db.flush()
    api_key, key = make_api_key(db)
    body = {
        "model": "student-oa-p",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is my order?"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    response = client.post("/v1/chat/completions", headers=auth(key), json=body)
    error = assert_error(response, 503, "no_model_deployed")
    assert "deploy" in error["message"]
    assert response.headers["Retry-After"] == "60"
    db.expire_all()
    row = db.get(ApiKey, api_key.id)
    assert row is not None and row.last_used_at is not None


def test_chat_completion_needs_a_user_turn(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "Hello!"},
        ]
    }
    response = client.post("/v1/chat/completions", headers=auth(key), json=body)
    error = assert_error(response, 422, "validation_error")
    assert "user" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": []},
        {"messages": "hello"},
        {"messages": [{"role": "user"}]},
        {"messages": [{"content": "hi"}]},
        {"messages": [{"role": "tool", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}] * 101},
        {**CHAT, "max_tokens": 0},
        {**CHAT, "max_tokens": 1025},
        {**CHAT, "temperature": -0.1},
        {**CHAT, "temperature": 2.5},
        {**CHAT, "stream": "sometimes"},
    ],
)
def test_chat_completion_invalid_body(
    client: TestClient, db: Session, body: dict[str, Any]
) -> None:
    _, key = make_api_key(db)
    response = client.post("/v1/chat/completions", headers=auth(key), json=body)
    error = assert_error(response, 422, "validation_error")
    assert isinstance(error["details"], list) and error["details"]
    for detail in error["details"]:
        assert set(detail) == {"loc", "msg", "type"}
        assert detail["loc"][0] == "body"


def test_chat_completion_body_that_is_not_json(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    response = client.post(
        "/v1/chat/completions",
        headers={**auth(key), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert_error(response, 422, "validation_error")


def test_chat_completion_body_too_large(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    big = {"messages": [{"role": "user", "content": "x" * 70_000}]}
    response = client.post("/v1/chat/completions", headers=auth(key), json=big)
    assert_error(response, 413, "payload_too_large")
