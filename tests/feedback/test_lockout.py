"""The login lockout's state machine: threshold, doubling, cap, refusal while locked, reset."""

from __future__ import annotations

import datetime as dt

from feedback.lockout import LockoutPolicy, LockState, judge

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
POLICY = LockoutPolicy(
    threshold=5, first_lock=dt.timedelta(minutes=1), max_lock=dt.timedelta(hours=1)
)


def test_lock_durations_double_from_the_threshold_up_to_the_cap() -> None:
    minutes = [POLICY.lock_for(n) for n in range(1, 13)]
    assert minutes[:4] == [None] * 4
    assert [m.total_seconds() / 60 for m in minutes[4:] if m] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert POLICY.lock_for(10_000) == dt.timedelta(hours=1)


def test_fifth_wrong_password_locks_and_refusals_do_not_count_or_check() -> None:
    state = LockState()
    for n in range(1, 6):
        verdict = judge(state, POLICY, T0, lambda: False)
        assert not verdict.ok and verdict.retry_after == 0
        assert verdict.locked == (n == 5)
        state = verdict.state
    assert state == LockState(5, T0 + dt.timedelta(minutes=1))

    def must_not_check() -> bool:
        raise AssertionError("the password is not checked while locked")

    refused = judge(state, POLICY, T0 + dt.timedelta(seconds=30), must_not_check)
    assert (refused.ok, refused.retry_after, refused.state) == (False, 30, state)
    assert judge(state, POLICY, T0 + dt.timedelta(seconds=59.5), must_not_check).retry_after == 1


def test_after_a_lock_each_wrong_password_locks_twice_as_long() -> None:
    state = LockState(5, T0)
    verdict = judge(state, POLICY, T0, lambda: False)  # the lock ended at T0
    assert verdict.locked
    assert verdict.state == LockState(6, T0 + dt.timedelta(minutes=2))


def test_success_resets_and_reports_an_unlock_only_after_a_lock() -> None:
    after_lock = judge(LockState(7, T0), POLICY, T0 + dt.timedelta(hours=2), lambda: True)
    assert after_lock.ok and after_lock.unlocked and after_lock.state == LockState()
    before_lock = judge(LockState(3), POLICY, T0, lambda: True)
    assert before_lock.ok and not before_lock.unlocked and before_lock.state == LockState()
