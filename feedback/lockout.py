"""Per-account login lockout with backoff: pure state transitions, no storage.

After `threshold` consecutive wrong passwords an account is locked for `first_lock`; each
further wrong password (once the lock has passed) locks it again for twice as long, up to
`max_lock`. While locked every attempt is refused without checking the password (a correct
one too), and refused attempts do not count. A successful login resets the count.

The state lives on the operator row (`Operator.failed_logins`, `Operator.locked_until`); for
e-mails without an account the API keeps the same state elsewhere, so that a lock does not tell
whether an account exists.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

_MAX_DOUBLINGS = 30  # 2**30 times the first lock is past any sensible cap


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int
    first_lock: dt.timedelta
    max_lock: dt.timedelta

    def lock_for(self, failures: int) -> dt.timedelta | None:
        """How long `failures` consecutive wrong passwords lock the account (None: not)."""
        if failures < self.threshold:
            return None
        doublings = min(failures - self.threshold, _MAX_DOUBLINGS)
        return min(self.first_lock * (1 << doublings), self.max_lock)


@dataclass(frozen=True)
class LockState:
    failures: int = 0
    locked_until: dt.datetime | None = None

    def retry_after(self, now: dt.datetime) -> int:
        """Whole seconds until the lock ends (at least 1); 0 when not locked."""
        if self.locked_until is None or self.locked_until <= now:
            return 0
        return max(1, math.ceil((self.locked_until - now).total_seconds()))

    def after_failure(self, policy: LockoutPolicy, now: dt.datetime) -> LockState:
        """The state after one more wrong password (while not locked)."""
        failures = self.failures + 1
        lock = policy.lock_for(failures)
        return LockState(failures, now + lock if lock is not None else self.locked_until)

    @property
    def was_locked(self) -> bool:
        """Whether the account reached the lock threshold since its last successful login."""
        return self.locked_until is not None


@dataclass(frozen=True)
class Verdict:
    """One attempt judged: the state to store and what to answer."""

    state: LockState
    ok: bool  # the password was right and the account not locked
    retry_after: int  # > 0: refused because the account is locked, for this many seconds
    locked: bool  # this attempt locked the account
    unlocked: bool  # this attempt cleared a lock (a successful login after one)


def judge(
    state: LockState, policy: LockoutPolicy, now: dt.datetime, password_ok: Callable[[], bool]
) -> Verdict:
    """Judge one login attempt; `password_ok` is only called when the account is not locked."""
    retry_after = state.retry_after(now)
    if retry_after:
        return Verdict(state, ok=False, retry_after=retry_after, locked=False, unlocked=False)
    if password_ok():
        return Verdict(LockState(), ok=True, retry_after=0, locked=False, unlocked=state.was_locked)
    after = state.after_failure(policy, now)
    locked = after.locked_until is not None and after.locked_until != state.locked_until
    return Verdict(after, ok=False, retry_after=0, locked=locked, unlocked=False)
