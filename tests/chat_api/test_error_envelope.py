"""A saturated store answers 503 with Retry-After in the JSON envelope, and an unexpected
failure answers a 500 in the same envelope with the security headers: never Starlette's plain
text."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from chat_api.app import create_app
from feedback import migrate
from feedback.settings import Settings
from tests.conftest import TEST_SECRET, create_database, drop_database


def test_an_exhausted_connection_pool_answers_503_with_retry_after(tmp_path: Path) -> None:
    # A database of its own: the request below commits, and the worker's shared test database
    # must stay as the other tests expect it.
    name = f"chatdistill_pool_{uuid.uuid4().hex[:12]}"
    pg_url = create_database(name)
    setup = create_engine(pg_url)
    migrate.upgrade(setup)
    setup.dispose()
    # One pooled connection, held by someone else for the whole request: the pool times out.
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.3)
    settings = Settings(
        data_dir=tmp_path, database={"url": pg_url}, auth={"secret_key": TEST_SECRET}
    )
    app = create_app(settings, session_factory=sessionmaker(bind=engine))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            with engine.connect():
                busy = client.post("/v1/widget/conversations", json={})
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"] == "2"
            assert busy.headers["x-content-type-options"] == "nosniff"
            assert busy.json()["error"]["code"] == "store_busy"
            # The pool is free again: the same request succeeds.
            assert client.post("/v1/widget/conversations", json={}).status_code == 201
    finally:
        engine.dispose()
        drop_database(name)


def test_an_unexpected_failure_answers_500_in_the_envelope(settings: Settings) -> None:
    app = create_app(settings)

    def broken() -> None:
        raise RuntimeError("a bug with a secret-looking detail 4111 1111 1111 1111")

    app.add_api_route("/v1/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert "4111" not in response.text  # the exception's text stays in the log
