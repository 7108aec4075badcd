"""The OpenAPI document is valid and complete; health, readiness and metrics behave."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from chat_api.app import create_app
from feedback.settings import Settings

EXPECTED_OPERATIONS = {
    ("post", "/v1/widget/conversations"),
    ("get", "/v1/widget/conversations/{conversation_id}"),
    ("get", "/v1/widget/conversations/{conversation_id}/events"),
    ("get", "/v1/operator/inbox"),
    ("get", "/v1/operator/inbox/events"),
    ("post", "/v1/operator/conversations/{conversation_id}/claim"),
    ("post", "/v1/operator/conversations/{conversation_id}/assign"),
    ("post", "/v1/operator/conversations/{conversation_id}/messages"),
    ("post", "/v1/operator/conversations/{conversation_id}/resolve"),
    ("post", "/v1/operator/conversations/{conversation_id}/hand-back"),
    ("post", "/v1/operator/conversations/{conversation_id}/typing"),
    ("get", "/v1/operator/conversations/{conversation_id}/events"),
    ("post", "/v1/widget/conversations/{conversation_id}/messages"),
    ("post", "/v1/widget/conversations/{conversation_id}/messages/stream"),
    ("post", "/v1/widget/conversations/{conversation_id}/messages/{message_id}/rating"),
    ("post", "/v1/widget/conversations/{conversation_id}/csat"),
    ("post", "/v1/widget/conversations/{conversation_id}/handoff"),
    ("post", "/v1/operator/login"),
    ("post", "/v1/operator/logout"),
    ("get", "/v1/operator/me"),
    ("get", "/v1/operator/conversations"),
    ("get", "/v1/operator/conversations/{conversation_id}"),
    ("post", "/v1/operator/messages/{message_id}/correction"),
    ("post", "/v1/operator/messages/{message_id}/intent"),
    ("get", "/v1/operator/approved-answers"),
    ("put", "/v1/operator/approved-answers/{intent}"),
    ("delete", "/v1/operator/approved-answers/{intent}"),
    ("get", "/v1/operator/metrics/summary"),
    ("get", "/v1/operator/models"),
    ("get", "/v1/operator/metrics/series"),
    ("get", "/v1/operator/models/history"),
    ("post", "/v1/operator/models/{version_id}/promote"),
    ("post", "/v1/operator/models/rollback"),
    ("post", "/v1/operator/models/{version_id}/canary"),
    ("post", "/v1/operator/models/canary/stop"),
    ("get", "/v1/operator/runs"),
    ("post", "/v1/operator/runs"),
    ("get", "/v1/operator/runs/{run_id}"),
    ("post", "/v1/operator/runs/{run_id}/cancel"),
    ("get", "/v1/admin/operators"),
    ("post", "/v1/admin/operators"),
    ("patch", "/v1/admin/operators/{operator_id}"),
    ("get", "/v1/admin/api-keys"),
    ("post", "/v1/admin/api-keys"),
    ("delete", "/v1/admin/api-keys/{key_id}"),
    ("get", "/v1/admin/audit"),
    ("get", "/v1/models"),
    ("post", "/v1/chat/completions"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}


def test_openapi_is_valid_and_lists_every_operation(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)
    operations = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == EXPECTED_OPERATIONS


def test_every_authenticated_operation_documents_its_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
            if path.startswith("/v1/") and path != "/v1/widget/conversations":
                if path != "/v1/operator/login":
                    assert "401" in operation["responses"], (method, path)
                assert "422" in operation["responses"], (method, path)
    widget_post = spec["paths"]["/v1/widget/conversations/{conversation_id}/messages"]["post"]
    assert {"401", "403", "413", "422", "429", "503"} <= set(widget_post["responses"])
    security = spec["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in security.values())


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database={"url": "postgresql+psycopg://postgres@127.0.0.1:1/nothing"},
        auth={"secret_key": "k" * 32},
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"].startswith("error")
        # Liveness does not depend on the database.
        assert client.get("/healthz").status_code == 200


def test_readyz_checks_redis_when_configured(tmp_path: Path, pg_url: str) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database={"url": pg_url},
        redis={"url": "redis://127.0.0.1:1/0"},
        auth={"secret_key": "k" * 32},
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["redis"].startswith("error")


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.post("/v1/widget/conversations", json={})
    client.get("/v1/widget/conversations/00000000-0000-0000-0000-000000000000")
    text = client.get("/metrics").text
    assert (
        'chatdistill_http_requests_total{method="POST",route="/v1/widget/conversations",'
        'status="201"} 1.0' in text
    )
    assert 'route="/v1/widget/conversations/{conversation_id}",status="401"' in text
    assert "00000000-0000" not in text


def test_unknown_route_uses_the_error_envelope(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
