"""Security headers on real responses of the app, and the API docs switched off in production."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from chat_api.routes.web import DASHBOARD_CSP
from chat_api.security_headers import HTML_CSP
from feedback.settings import Settings


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 200),
        ("get", "/v1/operator/me", 401),
        ("get", "/no/such/path", 404),
        ("post", "/v1/widget/conversations", 201),
        ("get", "/widget.js", 200),
    ],
)
def test_every_response_says_nosniff_once(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status, response.text
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    if not response.headers["content-type"].startswith("text/html"):
        assert "x-frame-options" not in response.headers


def test_a_validation_error_has_the_header_too(client: TestClient) -> None:
    response = client.post("/v1/widget/conversations", json={"site": 3})
    assert response.status_code == 422
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_dashboard_keeps_its_strict_policy_and_cannot_be_framed(client: TestClient) -> None:
    page = client.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers.get_list("content-security-policy") == [DASHBOARD_CSP]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers.get_list("x-content-type-options") == ["nosniff"]


@pytest.mark.parametrize("path", ["/demo", "/docs", "/redoc"])
def test_other_html_pages_cannot_be_framed(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["content-security-policy"] == HTML_CSP
    assert "frame-ancestors 'none'" in HTML_CSP


def _client(settings: Settings, factory: sessionmaker[Session], **update: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=update), session_factory=factory))


@pytest.fixture
def production(settings: Settings) -> Settings:
    return settings.model_copy(update={"environment": "production"})


def test_docs_are_off_in_production(
    production: Settings, session_factory: sessionmaker[Session]
) -> None:
    with _client(production, session_factory) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200


def test_docs_can_be_turned_on_in_production_and_off_elsewhere(
    production: Settings, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    docs_on = production.api.model_copy(update={"docs": True})
    with _client(production, session_factory, api=docs_on) as client:
        assert client.get("/docs").status_code == 200
    docs_off = settings.api.model_copy(update={"docs": False})
    with _client(settings, session_factory, api=docs_off) as client:
        assert client.get("/docs").status_code == 404


def test_the_docs_setting_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATDISTILL_ENVIRONMENT", "production")
    assert Settings().serve_docs is False
    monkeypatch.setenv("CHATDISTILL_API__DOCS", "true")
    assert Settings().serve_docs is True
    monkeypatch.delenv("CHATDISTILL_ENVIRONMENT")
    monkeypatch.setenv("CHATDISTILL_API__DOCS", "false")
    assert Settings().serve_docs is False
