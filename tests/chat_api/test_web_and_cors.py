"""The screens' static files (widget script, demo page, dashboard with its CSP) and CORS for the
widget origins configured under `api.cors_origins`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from feedback.settings import Settings

SHOP = "https://shop.example.com"


def test_widget_script_and_demo_page(client: TestClient) -> None:
    script = client.get("/widget.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/messages/stream" in script.text and "attachShadow" in script.text
    styles = client.get("/widget.css")
    assert styles.headers["content-type"].startswith("text/css") and ".launcher" in styles.text
    demo = client.get("/demo")
    assert demo.status_code == 200 and 'src="/widget.js"' in demo.text


def test_dashboard_is_served_with_a_strict_csp(client: TestClient) -> None:
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "/dashboard/js/app.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    module = client.get("/dashboard/js/app.js")
    assert module.headers["content-type"].startswith("text/javascript")
    assert client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path", ["/dashboard/../routes/web.py", "/dashboard/%2e%2e/app.py", "/dashboard/nope.js"]
)
def test_dashboard_serves_only_its_own_files(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.fixture
def cors_client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    configured = settings.model_copy(
        update={"api": settings.api.model_copy(update={"cors_origins": [SHOP]})}
    )
    with TestClient(create_app(configured, session_factory=session_factory)) as test_client:
        yield test_client


def test_cors_allows_configured_widget_origins_only(cors_client: TestClient) -> None:
    preflight = cors_client.options(
        "/v1/widget/conversations",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == SHOP
    started = cors_client.post("/v1/widget/conversations", json={}, headers={"Origin": SHOP})
    assert started.status_code == 201
    assert started.headers["access-control-allow-origin"] == SHOP

    other = "https://evil.example.net"
    refused = cors_client.options(
        "/v1/widget/conversations",
        headers={"Origin": other, "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    plain = cors_client.post("/v1/widget/conversations", json={}, headers={"Origin": other})
    assert "access-control-allow-origin" not in plain.headers


def test_no_cors_headers_without_configured_origins(client: TestClient) -> None:
    response = client.post("/v1/widget/conversations", json={}, headers={"Origin": SHOP})
    assert response.status_code == 201
    assert "access-control-allow-origin" not in response.headers
