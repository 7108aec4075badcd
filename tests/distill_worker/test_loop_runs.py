"""Opening runs on real PostgreSQL: concurrent openers get exactly one run (the unique slot, no
check-then-insert), the lease lets one task execute a run, and the admin trigger writes a queued
run row (409 while one is active) that the tick dispatches."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from feedback.db import make_session_factory, session_scope
from feedback.errors import InvalidInput
from feedback.models import DistillRun, OperatorRole, RunStatus, utcnow
from feedback.repositories.runs import RunRepository
from tests.fixtures.operators import assert_error, operator_headers

OPENERS = 8


@pytest.fixture
def committed(pg_engine: Engine) -> Iterator[Engine]:
    """For tests that commit for real (several connections): leave no run behind."""
    yield pg_engine
    with pg_engine.begin() as conn:
        conn.execute(delete(DistillRun))


def test_concurrent_openers_get_exactly_one_run(committed: Engine) -> None:
    factory = make_session_factory(committed)
    barrier = threading.Barrier(OPENERS)
    opened: list[uuid.UUID | None] = [None] * OPENERS
    errors: list[BaseException] = []

    def opener(i: int) -> None:
        try:
            with session_scope(factory) as session:
                barrier.wait(timeout=10)
                run = RunRepository(session).open_run("accuracy", {"opener": i}, {})
                opened[i] = run.id if run is not None else None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(OPENERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    winners = [run_id for run_id in opened if run_id is not None]
    assert len(winners) == 1
    with session_scope(factory) as session:
        runs = RunRepository(session).list()
        assert [r.id for r in runs] == winners and runs[0].status == "queued"
        # Once it ends, the next opener gets a run again.
        runs[0].status = RunStatus.SUCCEEDED.value
    with session_scope(factory) as session:
        assert RunRepository(session).open_run("schedule", {}, {}) is not None


def test_open_run_refuses_an_unknown_trigger(db: Session) -> None:
    with pytest.raises(InvalidInput, match="unknown run trigger"):
        RunRepository(db).open_run("whim", {}, {})


def test_the_lease_lets_one_task_execute_and_a_stale_one_be_taken_over(db: Session) -> None:
    repo = RunRepository(db)
    run = repo.open_run("manual", {}, {})
    assert run is not None
    claimed = repo.claim(run.id, "worker-a", lease_s=60)
    assert claimed is not None and claimed.status == "running" and claimed.attempts == 1
    assert repo.claim(run.id, "worker-b", lease_s=60) is None  # a live lease: busy
    assert repo.heartbeat(run.id, "worker-a") and not repo.heartbeat(run.id, "worker-b")
    run.heartbeat_at = utcnow() - dt.timedelta(seconds=120)  # worker-a died
    db.flush()
    taken = repo.claim(run.id, "worker-b", lease_s=60)
    assert taken is not None and taken.lease_owner == "worker-b" and taken.attempts == 2
    assert not repo.heartbeat(run.id, "worker-a")  # the old owner notices it lost the run
    repo.save_step(taken, "snapshot", {"path": "/s"}, progress=0.2)
    assert taken.steps["snapshot"]["done"] and taken.progress == 0.2
    repo.cancel(run.id)
    assert not repo.heartbeat(run.id, "worker-b") and taken.cancel_requested
    assert repo.claim(run.id, "worker-c", lease_s=60) is None  # finished: nothing to do


def test_runs_to_dispatch_are_unsent_or_lost(db: Session) -> None:
    repo = RunRepository(db)
    run = repo.open_run("manual", {}, {})
    assert run is not None
    now = utcnow()
    assert repo.to_dispatch(now=now, redispatch_after_s=600) == [run]
    repo.mark_dispatched(run, "task-1")
    assert repo.to_dispatch(now=now, redispatch_after_s=600) == []
    later = now + dt.timedelta(seconds=601)
    assert repo.to_dispatch(now=later, redispatch_after_s=600) == [run]  # maybe lost: resend
    run.heartbeat_at = later  # alive: leave it be
    db.flush()
    assert repo.to_dispatch(now=later, redispatch_after_s=600) == []


def test_a_run_awaiting_its_retry_is_not_resent_until_the_retry_is_overdue(db: Session) -> None:
    repo = RunRepository(db)
    run = repo.open_run("manual", {}, {})
    assert run is not None
    repo.mark_dispatched(run, "task-1")
    run.dispatched_at = utcnow() - dt.timedelta(seconds=900)  # sent long ago, then it ran
    assert repo.claim(run.id, "worker-a", lease_s=60) is not None
    # A teacher outage: the lease is given up, the retry due in 120 s.
    repo.release(run.id, "worker-a", retry_in_s=120)
    db.refresh(run)
    assert run.lease_owner is None and run.heartbeat_at is None
    due = utcnow() + dt.timedelta(seconds=120)
    # Neither while the retry waits its countdown nor just after it is due...
    assert repo.to_dispatch(now=due - dt.timedelta(seconds=60), redispatch_after_s=30) == []
    assert repo.to_dispatch(now=due + dt.timedelta(seconds=20), redispatch_after_s=30) == []
    # ...only when it has not started redispatch_after_s after that (its message was lost).
    assert repo.to_dispatch(now=due + dt.timedelta(seconds=40), redispatch_after_s=30) == [run]
    retry = repo.claim(run.id, "worker-b", lease_s=60)
    assert retry is not None and retry.attempts == 2
    with pytest.raises(ValueError, match="negative"):
        repo.release(run.id, "worker-b", retry_in_s=-1)


def test_admin_trigger_writes_a_queued_run_and_409_while_active(
    client: TestClient, db: Session
) -> None:
    _, op_headers = operator_headers(db)
    body = {"reason": "new intents launched", "kind": "compression"}
    assert_error(client.post("/v1/operator/runs", json=body, headers=op_headers), 403)
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    created = client.post("/v1/operator/runs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    run = created.json()
    assert (run["status"], run["trigger"], run["steps"]) == ("queued", "manual", {})
    assert run["trigger_detail"]["kind"] == "compression"
    again = client.post("/v1/operator/runs", json=body, headers=headers)
    assert_error(again, 409)
    assert run["id"] in again.json()["error"]["message"]
    bad = client.post("/v1/operator/runs", json={"reason": ""}, headers=headers)
    assert_error(bad, 422)
    listed = client.get("/v1/operator/runs", headers=headers).json()
    assert listed[0]["id"] == run["id"] and "attempts" in listed[0]
