"""Operator login under the per-account lockout (`feedback.lockout`).

An account's count and lock live on its row. An e-mail without an account goes through the
same state machine with its state kept in a shadow store (Redis when configured, in process
otherwise, keyed by a hash of the e-mail), so that it answers exactly like an account: 401
for each wrong password, then 429 once "locked". Otherwise a lock would tell an attacker which
e-mails have accounts.

Locks and unlocks of real accounts are written to the audit log in the request's transaction;
the caller must therefore answer a refused login without raising (a raise rolls it back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from sqlalchemy.orm import Session

from feedback.credentials import DUMMY_PASSWORD_HASH, verify_password
from feedback.lockout import LockoutPolicy, LockState, judge
from feedback.models import ActorType, Operator, utcnow
from feedback.repositories.audit import AuditRepository
from feedback.repositories.operators import OperatorRepository, normalize_email
from feedback.settings import AuthSettings

# How long the shadow remembers an e-mail's failures. An account remembers them until its next
# successful login; a month is as long as is worth holding for e-mails nobody owns.
SHADOW_TTL_S = 30 * 24 * 3600


def lockout_policy(auth: AuthSettings) -> LockoutPolicy:
    return LockoutPolicy(
        threshold=auth.login_lockout_threshold,
        first_lock=dt.timedelta(seconds=auth.login_lockout_seconds),
        max_lock=dt.timedelta(seconds=auth.login_lockout_max_seconds),
    )


class LockoutShadow(Protocol):
    def load(self, email: str) -> LockState: ...

    def save(self, email: str, state: LockState) -> None: ...

    def close(self) -> None: ...


class InProcessLockoutShadow:
    """Shadow states in this process; past `max_keys` the expired and then the oldest go (a
    forgotten e-mail only answers 401 again; no account is unlocked by it)."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._states: dict[str, tuple[LockState, float]] = {}
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def load(self, email: str) -> LockState:
        with self._lock:
            entry = self._states.get(_key(email))
        if entry is None or entry[1] <= time.monotonic():
            return LockState()
        return entry[0]

    def save(self, email: str, state: LockState) -> None:
        now = time.monotonic()
        with self._lock:
            key = _key(email)
            self._states.pop(key, None)  # re-inserted last: the dict's order is by last write
            self._states[key] = (state, now + SHADOW_TTL_S)
            if len(self._states) > self._max_keys:
                # Keep the newest 90%: trimming is O(n), so not again at the very next save.
                live = [(k, v) for k, v in self._states.items() if v[1] > now]
                self._states = dict(live[-max(1, self._max_keys * 9 // 10) :])

    def close(self) -> None:
        self._states.clear()


class RedisLockoutShadow:
    """Shadow states in Redis, shared by every API process (like the rate limits)."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    def load(self, email: str) -> LockState:
        raw = self._redis.get(self._prefix + _key(email))
        if raw is None:
            return LockState()
        data = json.loads(raw)
        until = data.get("locked_until")
        return LockState(int(data["failures"]), dt.datetime.fromisoformat(until) if until else None)

    def save(self, email: str, state: LockState) -> None:
        until = state.locked_until.isoformat() if state.locked_until else None
        value = json.dumps({"failures": state.failures, "locked_until": until})
        self._redis.set(self._prefix + _key(email), value, ex=SHADOW_TTL_S)

    def close(self) -> None:
        self._redis.close()


def _key(email: str) -> str:
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()


@dataclass(frozen=True)
class LoginResult:
    """`operator` is set when the password was right (the account may still be deactivated);
    `retry_after` > 0 when the attempt was refused because the e-mail is locked."""

    operator: Operator | None
    retry_after: int


def attempt_login(
    session: Session,
    shadow: LockoutShadow,
    email: str,
    password: str,
    *,
    policy: LockoutPolicy,
    ip: str,
) -> LoginResult:
    now = utcnow()
    operator = OperatorRepository(session).find_for_login(email)
    if operator is None:
        before = shadow.load(email)
        # Same cost as a real check: verify against a dummy hash.
        verdict = judge(before, policy, now, lambda: verify_password(password, DUMMY_PASSWORD_HASH))
        if verdict.state != before:
            shadow.save(email, verdict.state)
        return LoginResult(None, verdict.retry_after)

    failures_before = operator.failed_logins
    verdict = OperatorRepository(session).attempt_login(operator, password, policy=policy, now=now)
    audit = AuditRepository(session)
    if verdict.locked:
        assert verdict.state.locked_until is not None
        audit.record(
            actor_type=ActorType.SYSTEM,
            actor_id=None,
            action="operator.login_locked",
            target_type="operator",
            target_id=str(operator.id),
            details={
                "ip": ip,
                "failed_logins": verdict.state.failures,
                "locked_until": verdict.state.locked_until.isoformat(),
            },
        )
    if verdict.unlocked:
        audit.record(
            actor_type=ActorType.SYSTEM,
            actor_id=None,
            action="operator.login_unlocked",
            target_type="operator",
            target_id=str(operator.id),
            details={"ip": ip, "reason": "successful login", "failed_logins": failures_before},
        )
    return LoginResult(operator if verdict.ok else None, verdict.retry_after)
