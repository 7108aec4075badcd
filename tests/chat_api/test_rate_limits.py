"""Rate limits: per IP, per conversation, conversation starts, logins and API keys; in process
and on a real Redis shared by two app instances; the client address behind trusted proxies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from chat_api.ratelimit import InProcessRateLimiter, RedisRateLimiter
from feedback.settings import Settings
from tests.conftest import REDIS_URL
from tests.event_loop import run_async
from tests.fixtures.operators import assert_error, auth, make_api_key


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


# --- the client address behind proxies ---------------------------------------------------------


def behind_proxies(settings: Settings, hops: int) -> Settings:
    return settings.model_copy(
        update={"api": settings.api.model_copy(update={"trusted_proxy_hops": hops})}
    )


@pytest.mark.usefixtures("steady_minute")
def test_behind_one_proxy_a_spoofed_forwarded_for_does_not_escape_the_login_limit(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    limit = settings.rate_limit.logins_per_ip_per_minute
    assert limit == 10  # the shipped default, which the probe got past
    app = create_app(behind_proxies(settings, 1), session_factory=session_factory)
    with TestClient(app) as client:
        codes = []
        for n in range(limit + 1):
            # A new made-up leftmost entry (and a new e-mail, so no account lockout) each time;
            # the proxy's rightmost entry is the real client.
            codes.append(
                client.post(
                    "/v1/operator/login",
                    json={"email": f"nobody{n}@example.com", "password": "x" * 12},
                    headers={"X-Forwarded-For": f"10.9.{n}.1, 198.51.100.7"},
                ).status_code
            )
        refused = client.post(
            "/v1/operator/login",
            json={"email": "someone@example.com", "password": "x" * 12},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        # Another real client behind the same proxy is not affected.
        other = client.post(
            "/v1/operator/login",
            json={"email": "someone@example.com", "password": "x" * 12},
            headers={"X-Forwarded-For": "198.51.100.7, 198.51.100.8"},
        )
    assert codes == [401] * limit + [429]
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert other.status_code == 401


def test_behind_one_proxy_a_spoofed_forwarded_for_does_not_escape_the_start_limit(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    s = limited(behind_proxies(settings, 1), conversations_per_ip_per_hour=3)
    app = create_app(s, session_factory=session_factory)
    with TestClient(app) as client:
        codes = [
            client.post(
                "/v1/widget/conversations",
                json={},
                headers={"X-Forwarded-For": f"10.9.{n}.1, 198.51.100.7"},
            ).status_code
            for n in range(4)
        ]
    assert codes == [201, 201, 201, 429]


def test_without_trusted_proxies_the_header_is_ignored(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    s = limited(settings, conversations_per_ip_per_hour=2)
    assert s.api.trusted_proxy_hops == 0  # the default
    app = create_app(s, session_factory=session_factory)
    with TestClient(app) as client:
        codes = [
            client.post(
                "/v1/widget/conversations", json={}, headers={"X-Forwarded-For": f"10.9.{n}.1"}
            ).status_code
            for n in range(3)
        ]
    assert codes == [201, 201, 429]


def test_the_old_trust_forwarded_for_setting_is_refused_with_what_to_set() -> None:
    with pytest.raises(ValueError, match="CHATDISTILL_API__TRUSTED_PROXY_HOPS"):
        Settings(api={"trust_forwarded_for": True})


# --- per API key -------------------------------------------------------------------------------


@pytest.mark.usefixtures("steady_minute")
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_per_api_key_limit_answers_429_with_retry_after(
    backend: str,
    settings: Settings,
    redis_settings: Settings,
    session_factory: sessionmaker[Session],
    db: Session,
) -> None:
    base = redis_settings if backend == "redis" else settings
    assert base.rate_limit.per_api_key_per_minute == 600
    app = create_app(limited(base, per_api_key_per_minute=3), session_factory=session_factory)
    _, key = make_api_key(db)
    _, other_key = make_api_key(db)
    with TestClient(app) as client:
        codes = [client.get("/v1/models", headers=auth(key)).status_code for _ in range(3)]
        refused = client.post(
            "/v1/chat/completions",
            headers=auth(key),
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        other = client.get("/v1/models", headers=auth(other_key))
    assert codes == [200, 200, 200]
    error = assert_error(refused, 429, "rate_limited")
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60 and error["retry_after"] == retry_after
    assert "api_key" in error["message"]
    assert other.status_code == 200


# --- the in-process limiter's cleanup ----------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_in_process_cleanup_keeps_every_current_window_and_blocked_client() -> None:
    async def run() -> None:
        clock = Clock(1_000_000 * 3600.0)  # the start of an hour (and of a minute)
        limiter = InProcessRateLimiter(max_keys=5, clock=clock)
        # A client blocked for the hour, and one blocked for the minute.
        assert [(await limiter.hit("start:a", 1, 3600)).allowed for _ in range(2)] == [True, False]
        assert [(await limiter.hit("ip:b", 1, 60)).allowed for _ in range(2)] == [True, False]
        # The same key name with another window length is another counter.
        assert (await limiter.hit("start:a", 1, 60)).allowed
        clock.now += 61  # the minute windows above have ended; the hour has not
        for n in range(10):  # many new clients: past max_keys, cleanups run
            assert (await limiter.hit(f"ip:c{n}", 1, 60)).allowed
        blocked = await limiter.hit("start:a", 1, 3600)
        assert not blocked.allowed and blocked.retry_after == 3600 - 61
        # The ended minute windows were dropped; the current ones (10 + the hour) were kept.
        assert limiter.counters == 11
        assert not (await limiter.hit("ip:c0", 1, 60)).allowed
        assert (await limiter.hit("ip:b", 1, 60)).allowed  # its minute really has passed

    run_async(run())
