"""The pure scheduler with fake step outputs: admission, join/leave between steps, token limits,
deadlines, aborts, overload, adaptation of the batch cap, static and single modes, priorities."""

from __future__ import annotations

import pytest

from chat_api.batching.scheduler import Overloaded, Scheduler, SchedulerConfig


def sched(**kw: object) -> Scheduler:
    base: dict[str, object] = {"max_wait_s": 0.0}
    return Scheduler(SchedulerConfig(**(base | kw)))  # type: ignore[arg-type]


def step(s: Scheduler, now: float, eos: set[int] | None = None) -> tuple[list[int], list[int]]:
    """Run one fake step: every admitted and running row produces a token (EOS for `eos`).
    -> (rows in the step, rows that finished)."""
    plan = s.schedule(now)
    rows = plan.running + plan.admit
    done = s.update({r: r in (eos or set()) for r in rows}, 0.01, now)
    return rows, [f.request_id for f in done]


def test_requests_join_between_steps_and_leave_when_done() -> None:
    s = sched()
    s.submit(1, 0.0, max_new_tokens=10)
    s.submit(2, 0.0, max_new_tokens=10)
    plan = s.schedule(0.0)
    assert plan.admit == [1, 2] and plan.running == []
    s.update({1: False, 2: False}, 0.01, 0.0)
    s.submit(3, 0.01, max_new_tokens=10)  # arrives mid-generation
    plan = s.schedule(0.02)
    assert plan.running == [1, 2] and plan.admit == [3]  # joins without waiting for 1 and 2
    done = s.update({1: True, 2: False, 3: False}, 0.01, 0.02)
    assert [f.request_id for f in done] == [1] and done[0].reason == "stop"
    assert s.schedule(0.03).running == [2, 3]  # 1 left the batch


def test_token_limit_finishes_with_length() -> None:
    s = sched()
    s.submit(7, 0.0, max_new_tokens=3)
    finished: list[int] = []
    steps = 0
    while not finished:
        _, finished = step(s, 0.0)
        steps += 1
    assert steps == 3
    s2 = sched()
    s2.submit(8, 0.0, max_new_tokens=3)
    plan = s2.schedule(0.0)
    assert s2.update({8: False}, 0.01, 0.0) == []
    out = s2.update({8: False}, 0.01, 0.0) + s2.update({8: False}, 0.01, 0.0)
    assert plan.admit == [8] and [(f.request_id, f.reason) for f in out] == [(8, "length")]


def test_deadline_expires_waiting_and_running_requests() -> None:
    s = sched(max_batch=1)
    s.submit(1, 0.0, max_new_tokens=100, deadline_s=1.0)
    s.submit(2, 0.0, max_new_tokens=100, deadline_s=0.5)
    rows, _ = step(s, 0.1)
    assert rows == [1]  # 2 waits: the batch holds one
    plan = s.schedule(0.6)
    assert plan.expired == [2] and plan.running == [1]  # 2 expired while waiting
    s.update({1: False}, 0.01, 0.6)
    plan = s.schedule(1.0)
    assert plan.expired == [1] and plan.idle
    assert s.running == [] and s.queued == 0


def test_abort_frees_the_row_at_the_next_step() -> None:
    s = sched()
    for rid in (1, 2, 3):
        s.submit(rid, 0.0, max_new_tokens=50)
    step(s, 0.0)
    s.abort(2)
    s.abort(99)  # unknown: ignored
    plan = s.schedule(0.01)
    assert plan.aborted == [2] and plan.running == [1, 3]
    # A late output for the aborted row is ignored.
    assert s.update({1: False, 2: True, 3: False}, 0.01, 0.01) == []
    s.submit(4, 0.02, max_new_tokens=5)
    s.abort(4)  # aborted before it was ever admitted
    plan = s.schedule(0.03)
    assert plan.aborted == [4] and plan.admit == []


def test_full_queue_is_refused_with_retry_after_and_recovers() -> None:
    s = sched(max_batch=2, max_queue=3)
    for rid in range(3):
        s.submit(rid, 0.0, max_new_tokens=4)
    with pytest.raises(Overloaded) as refused:
        s.submit(99, 0.0, max_new_tokens=4)
    assert refused.value.retry_after_s >= 1 and "retry in" in str(refused.value)
    step(s, 0.0)  # two are admitted: the queue has room again
    s.submit(99, 0.01, max_new_tokens=4)
    assert s.queued == 2


def test_duplicate_ids_are_refused() -> None:
    s = sched()
    s.submit(1, 0.0, max_new_tokens=4)
    with pytest.raises(ValueError, match="already scheduled"):
        s.submit(1, 0.0, max_new_tokens=4)


def test_batch_cap_shrinks_to_meet_the_latency_target() -> None:
    # Steps cost 10 ms + 5 ms per row; replies average 16 tokens; target 0.64 s -> 40 ms per
    # step -> at most 6 rows.
    s = sched(max_batch=64, latency_target_s=0.64)
    assert s.batch_cap() == 64  # nothing measured yet
    for batch in (1, 2, 4, 8, 16) * 5:
        s.update({-1 - i: False for i in range(batch)}, 0.010 + 0.005 * batch, 0.0)
    assert s.batch_cap() == 6
    for rid in range(20):
        s.submit(rid, 0.0, max_new_tokens=100)
    assert len(s.schedule(0.0).admit) == 6


def test_idle_batch_waits_for_companions_only_under_load() -> None:
    s = Scheduler(SchedulerConfig(max_wait_s=0.01))
    s.submit(1, 0.0, max_new_tokens=4)
    assert s.schedule(0.0).admit == [1]  # first arrival: no rate yet, go at once
    s.update({1: True}, 0.01, 0.0)
    busy = Scheduler(SchedulerConfig(max_wait_s=0.01))
    for i in range(10):  # 1000 arrivals/s: about ten expected within the window
        busy.submit(i, i * 0.001, max_new_tokens=4)
    busy.schedule(0.0095)  # they are admitted: the window has passed for the oldest
    busy.update({i: True for i in range(10)}, 0.01, 0.5)
    busy.submit(10, 1.0, max_new_tokens=4)  # a 1 s gap lowers the rate estimate...
    busy.submit(11, 1.0005, max_new_tokens=4)  # ...a 0.5 ms gap raises it again
    plan = busy.schedule(1.0006)
    assert plan.admit == [] and plan.wait_s is not None and 0 < plan.wait_s <= 0.01
    assert busy.schedule(1.0106).admit == [10, 11]


def test_static_mode_admits_only_into_an_empty_batch() -> None:
    s = sched(mode="static")
    s.submit(1, 0.0, max_new_tokens=3)
    step(s, 0.0)
    s.submit(2, 0.0, max_new_tokens=3)
    rows, _ = step(s, 0.01)
    assert rows == [1]  # 2 waits for the batch to finish
    step(s, 0.02)
    plan = s.schedule(0.03)
    assert plan.admit == [2] and plan.running == []


def test_single_mode_runs_one_at_a_time() -> None:
    s = sched(mode="single")
    for rid in (1, 2):
        s.submit(rid, 0.0, max_new_tokens=2)
    assert step(s, 0.0)[0] == [1]
    assert step(s, 0.0)[0] == [1]
    assert step(s, 0.0)[0] == [2]


def test_lower_priority_number_is_admitted_first() -> None:
    s = sched(max_batch=1)
    s.submit(1, 0.0, max_new_tokens=1, priority=1)
    s.submit(2, 0.0, max_new_tokens=1, priority=1)
    s.submit(3, 0.0, max_new_tokens=1, priority=0)  # an operator preview
    order = [step(s, 0.0)[0][0] for _ in range(3)]
    assert order == [3, 1, 2]
