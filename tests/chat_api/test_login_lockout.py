"""Per-account login lockout: five wrong passwords lock an account whatever the IP, a lock
refuses the right password too, it ends and doubles, a success resets the count, locks and
unlocks are audited, and an e-mail without an account behaves exactly like one."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from feedback.models import Operator, utcnow
from feedback.settings import Settings
from tests.conftest import REDIS_URL
from tests.fixtures.operators import assert_error, audit_entries, make_operator

WRONG = "not the password at all"


def configured(settings: Settings, **auth: float) -> Settings:
    """Behind one trusted proxy (the test picks each request's client address through the
    header's rightmost entry), with these lockout settings."""
    return settings.model_copy(
        update={
            "api": settings.api.model_copy(update={"trusted_proxy_hops": 1}),
            "auth": settings.auth.model_copy(update=auth),
        }
    )


@pytest.fixture
def proxied(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with TestClient(create_app(configured(settings), session_factory=session_factory)) as client:
        yield client


def attempt(client: TestClient, email: str, password: str, n: int = 0) -> Response:
    """A login from client address 203.0.113.<n>, behind a made-up leftmost entry."""
    return client.post(
        "/v1/operator/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": f"6.6.6.6, 203.0.113.{n}"},
    )


def row(db: Session, operator: Operator) -> Operator:
    db.expire_all()
    fresh = db.get(Operator, operator.id)
    assert fresh is not None
    return fresh


def test_the_sixth_attempt_after_five_wrong_passwords_is_locked_whatever_the_ip(
    proxied: TestClient, db: Session, settings: Settings
) -> None:
    assert settings.auth.login_lockout_threshold == 5
    operator, password = make_operator(db)
    for n in range(5):  # five client addresses: the per-IP limit never applies
        assert_error(attempt(proxied, operator.email, WRONG, n), 401, "login_failed")
    locked_row = row(db, operator)
    assert locked_row.failed_logins == 5
    assert locked_row.locked_until is not None
    (entry,) = audit_entries(db, action="operator.login_locked", target_id=str(operator.id))
    assert entry.actor_type == "system"
    assert entry.details["failed_logins"] == 5
    assert entry.details["ip"] == "203.0.113.4"

    for n, pw in [(5, WRONG), (6, password)]:  # the right password is refused too
        response = attempt(proxied, operator.email, pw, n)
        error = assert_error(response, 429, "login_locked")
        retry_after = int(response.headers["Retry-After"])
        assert 55 <= retry_after <= 60 and error["retry_after"] == retry_after
        assert "refused" in error["message"] and "right password" in error["message"]
    # Refused attempts neither count nor extend the lock, and issue no token.
    assert row(db, operator).failed_logins == 5
    assert row(db, operator).locked_until == locked_row.locked_until
    assert audit_entries(db, action="operator.login") == []


def test_a_lock_ends_and_the_right_password_then_resets_the_count(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    s = configured(settings, login_lockout_seconds=0.5, login_lockout_max_seconds=60)
    operator, password = make_operator(db)
    with TestClient(create_app(s, session_factory=session_factory)) as client:
        for n in range(5):
            attempt(client, operator.email, WRONG, n)
        assert_error(attempt(client, operator.email, password, 9), 429, "login_locked")
        time.sleep(0.6)
        ok = attempt(client, operator.email, password, 9)
        assert ok.status_code == 200, ok.text
        fresh = row(db, operator)
        assert (fresh.failed_logins, fresh.locked_until) == (0, None)
        (unlock,) = audit_entries(db, action="operator.login_unlocked", target_id=str(operator.id))
        assert unlock.details["failed_logins"] == 5
        # The count starts again from zero: four more wrong passwords do not lock.
        for n in range(4):
            assert_error(attempt(client, operator.email, WRONG, n), 401, "login_failed")
        assert attempt(client, operator.email, password, 9).status_code == 200
        assert len(audit_entries(db, action="operator.login_locked")) == 1


def test_each_wrong_password_after_a_lock_doubles_it(
    settings: Settings, session_factory: sessionmaker[Session], db: Session
) -> None:
    s = configured(settings, login_lockout_seconds=0.4, login_lockout_max_seconds=60)
    operator, _ = make_operator(db)
    with TestClient(create_app(s, session_factory=session_factory)) as client:
        for n in range(5):
            attempt(client, operator.email, WRONG, n)
        time.sleep(0.5)
        before = utcnow()
        assert_error(attempt(client, operator.email, WRONG, 7), 401, "login_failed")
        after = utcnow()
    fresh = row(db, operator)
    assert fresh.failed_logins == 6 and fresh.locked_until is not None
    lock = dt.timedelta(seconds=0.8)
    assert before + lock <= fresh.locked_until <= after + lock
    assert len(audit_entries(db, action="operator.login_locked")) == 2


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_an_unknown_email_locks_exactly_like_an_account(
    backend: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
    db: Session,
    redis_prefix: str,
) -> None:
    s = configured(settings)
    if backend == "redis":
        s = s.model_copy(
            update={
                "redis": s.redis.model_copy(update={"url": REDIS_URL, "key_prefix": redis_prefix})
            }
        )
    operator, _ = make_operator(db)
    with TestClient(create_app(s, session_factory=session_factory)) as client:
        known = [attempt(client, operator.email, WRONG, n) for n in range(6)]
        unknown = [attempt(client, "Nobody@Example.com ", WRONG, n) for n in range(5)]
        unknown.append(attempt(client, "nobody@example.com", WRONG, 5))  # same e-mail, normalised
    assert [r.status_code for r in known] == [401] * 5 + [429]
    assert [r.status_code for r in unknown] == [401] * 5 + [429]
    # The same answers, but for the seconds left (which differ by how long the test took).
    assert [shape(r) for r in known] == [shape(r) for r in unknown]


def shape(response: Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    seconds = response.headers.get("Retry-After", "-")
    return response.status_code, error["code"], error["message"].replace(seconds, "N")
