"""Hot swap across processes: a running app follows the registry's `production` alias when a
model-change event arrives on real Redis, and by polling when Redis is unreachable; a bundle
that fails to load leaves the old one serving; the admin promote endpoint of one app makes
another app swap; no request fails during a swap.

The apps here open their own connections (as deployed processes do), so this module works in a
database of its own, committed for real and dropped at the end."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chat_api.app import create_app
from feedback.events import publish_model_change
from feedback.models import OperatorRole
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from tests.conftest import REDIS_URL
from tests.fixtures.hot_swap import app_settings, in_store, wait_for, wait_subscribed
from tests.fixtures.operators import make_operator
from tests.live.server import free_port


def move_production(url: str, version: str) -> None:
    in_store(url, lambda s: ModelVersionRepository(s).set_alias(PRODUCTION, version, reason="test"))


def served_version(client: TestClient) -> str:
    """Ask the API one question; -> the model version that answered (fails on any error)."""
    started = client.post("/v1/widget/conversations", json={})
    assert started.status_code == 201, started.text
    body = started.json()
    response = client.post(
        f"/v1/widget/conversations/{body['conversation_id']}/messages",
        json={"text": "where is my order"},
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert response.status_code == 201, response.text
    version = response.json()["reply"]["model_version"]
    assert isinstance(version, str)
    return version


def test_an_event_on_redis_swaps_a_running_app_without_a_failed_request(
    store_url: str, versions: dict[str, str], tmp_path: Path, redis_prefix: str
) -> None:
    settings = app_settings(
        tmp_path, store_url, redis={"url": REDIS_URL, "key_prefix": redis_prefix}
    )
    with TestClient(create_app(settings)) as client:
        assert served_version(client) == versions["a"]
        wait_subscribed(settings)
        seen: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    seen.append(served_version(client))
                except BaseException as exc:  # any failed request fails the test
                    errors.append(exc)
                    return

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            move_production(store_url, versions["b"])
            publish_model_change(settings, alias=PRODUCTION, version_id=versions["b"], reason="t")
            wait_for(lambda: versions["b"] in seen or bool(errors), 20, "the swap")
            time.sleep(0.3)
        finally:
            stop.set()
            worker.join(30)
        assert errors == []
        # Every request answered; once B answered, A never answered again.
        first_b = seen.index(versions["b"])
        assert set(seen[first_b:]) == {versions["b"]}
        assert served_version(client) == versions["b"]


def test_without_redis_the_polling_fallback_swaps(
    store_url: str, versions: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis configured but down: nothing listens on this port.
    dead = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    settings = app_settings(
        tmp_path, store_url, redis={"url": dead}, events={"poll_interval_s": 0.5}
    )
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings)) as client:
        assert served_version(client) == versions["a"]
        move_production(store_url, versions["b"])
        publish_model_change(settings, alias=PRODUCTION, version_id=versions["b"], reason="t")
        took = wait_for(lambda: served_version(client) == versions["b"], 15, "the polled swap")
    assert took < 10
    assert "polling" in caplog.text  # the failed publish and subscription say so
    assert "hunter2secret" not in caplog.text  # the Redis password never reaches the logs


def test_a_bundle_that_fails_to_load_leaves_the_old_one_serving(
    store_url: str, versions: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = app_settings(tmp_path, store_url, events={"poll_interval_s": 0.3})
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings)) as client:
        move_production(store_url, versions["bad"])
        wait_for(lambda: f"cannot serve production {versions['bad']}" in caplog.text, 10, "log")
        assert served_version(client) == versions["a"]
        time.sleep(1.0)  # several more polls: the refused version is not retried each time
        assert caplog.text.count(f"cannot serve production {versions['bad']}") == 1
        assert served_version(client) == versions["a"]
        move_production(store_url, versions["b"])  # the next good version is still followed
        wait_for(lambda: served_version(client) == versions["b"], 10, "the swap to b")


def test_the_admin_promote_endpoint_makes_other_processes_swap(
    store_url: str, versions: dict[str, str], tmp_path: Path, redis_prefix: str
) -> None:
    redis_settings = {"url": REDIS_URL, "key_prefix": redis_prefix}
    settings_a = app_settings(tmp_path / "a", store_url, redis=redis_settings)
    settings_b = app_settings(tmp_path / "b", store_url, redis=redis_settings)
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery staple"
    in_store(store_url, lambda s: make_operator(s, role=OperatorRole.ADMIN, email=email))
    with (
        TestClient(create_app(settings_a)) as admin_app,
        TestClient(create_app(settings_b)) as other,
    ):
        assert served_version(other) == versions["a"]
        wait_subscribed(settings_b, count=2)
        token = admin_app.post(
            "/v1/operator/login", json={"email": email, "password": password}
        ).json()["access_token"]
        response = admin_app.post(
            f"/v1/operator/models/{versions['b']}/promote",
            json={"reason": "better"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["serving"] == versions["b"]
        wait_for(lambda: served_version(other) == versions["b"], 10, "the other app's swap")
        history = admin_app.get(
            "/v1/operator/models/history", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert history[0]["model_version_id"] == versions["b"]
