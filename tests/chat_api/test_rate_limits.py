"""Rate limits: per IP, per conversation, conversation starts and logins; in process and on a
real Redis shared by two app instances."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from chat_api.ratelimit import InProcessRateLimiter, RedisRateLimiter
from feedback.settings import Settings
from tests.conftest import REDIS_URL
from tests.event_loop import run_async


def limited(settings: Settings, **limits: int) -> Settings:
    return settings.model_copy(update={"rate_limit": settings.rate_limit.model_copy(update=limits)})


@pytest.fixture
def redis_settings(settings: Settings, redis_prefix: str) -> Settings:
    return settings.model_copy(
        update={
            "redis": settings.redis.model_copy(
                update={"url": REDIS_URL, "key_prefix": redis_prefix}
            )
        }
    )


def start(client: TestClient) -> tuple[str, dict[str, str]]:
    data = client.post("/v1/widget/conversations", json={}).json()
    return data["conversation_id"], {"Authorization": f"Bearer {data['token']}"}


@pytest.mark.usefixtures("steady_minute")
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_per_conversation_limit_answers_429_with_retry_after(
    backend: str,
    settings: Settings,
    redis_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    base = redis_settings if backend == "redis" else settings
    app = create_app(limited(base, per_conversation_per_minute=3), session_factory=session_factory)
    with TestClient(app) as client:
        cid, headers = start(client)
        url = f"/v1/widget/conversations/{cid}/csat"
        statuses = [
            client.post(url, json={"score": 3}, headers=headers).status_code for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        refused = client.post(url, json={"score": 3}, headers=headers)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another conversation from the same client is not affected.
        cid2, headers2 = start(client)
        assert (
            client.post(
                f"/v1/widget/conversations/{cid2}/csat", json={"score": 3}, headers=headers2
            ).status_code
            == 200
        )
        assert 'chatdistill_rate_limited_total{limit="conversation"}' in client.get("/metrics").text


@pytest.mark.usefixtures("steady_minute")
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_per_ip_limit_covers_every_widget_call(
    backend: str,
    settings: Settings,
    redis_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    base = redis_settings if backend == "redis" else settings
    app = create_app(limited(base, per_ip_per_minute=4), session_factory=session_factory)
    with TestClient(app) as client:
        cid, headers = start(client)  # 1
        for _ in range(3):  # 2, 3, 4
            assert client.get(f"/v1/widget/conversations/{cid}", headers=headers).status_code == 200
        assert client.get(f"/v1/widget/conversations/{cid}", headers=headers).status_code == 429
        assert client.post("/v1/widget/conversations", json={}).status_code == 429
        # Health and metrics are not widget calls.
        assert client.get("/healthz").status_code == 200


def test_conversation_starts_are_limited_per_ip(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    app = create_app(
        limited(settings, conversations_per_ip_per_hour=2), session_factory=session_factory
    )
    with TestClient(app) as client:
        codes = [client.post("/v1/widget/conversations", json={}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


@pytest.mark.usefixtures("steady_minute")
def test_login_attempts_are_limited(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    app = create_app(limited(settings, logins_per_ip_per_minute=2), session_factory=session_factory)
    with TestClient(app) as client:
        body = {"email": "nobody@example.com", "password": "wrong-password-123"}
        codes = [client.post("/v1/operator/login", json=body).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_redis_limit_is_shared_by_two_app_instances(
    redis_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    settings = limited(redis_settings, conversations_per_ip_per_hour=3)
    app_a = create_app(settings, session_factory=session_factory)
    app_b = create_app(settings, session_factory=session_factory)
    with TestClient(app_a) as a, TestClient(app_b) as b:
        codes = [c.post("/v1/widget/conversations", json={}).status_code for c in (a, b, a, b)]
    assert codes == [201, 201, 201, 429]


def test_disabled_rate_limits_never_refuse(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    s = limited(settings, conversations_per_ip_per_hour=1)
    s = s.model_copy(update={"rate_limit": s.rate_limit.model_copy(update={"enabled": False})})
    app = create_app(s, session_factory=session_factory)
    with TestClient(app) as client:
        codes = {client.post("/v1/widget/conversations", json={}).status_code for _ in range(3)}
    assert codes == {201}


@pytest.mark.usefixtures("steady_minute")
def test_limiters_count_windows_identically(redis_prefix: str) -> None:
    async def run() -> tuple[list[bool], list[bool]]:
        memory = InProcessRateLimiter()
        shared = RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
        try:
            a = [(await memory.hit("k", 2, 60)).allowed for _ in range(4)]
            b = [(await shared.hit("k", 2, 60)).allowed for _ in range(4)]
        finally:
            await memory.close()
            await shared.close()
        return a, b

    in_memory, in_redis = run_async(run())
    assert in_memory == in_redis == [True, True, False, False]
