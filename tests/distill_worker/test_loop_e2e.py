"""The continual loop end to end (slow): real PostgreSQL, a real redis-server, real `chatdistill
worker` processes (Celery, beat embedded) and the real default teachers.

A queued run (what the admin trigger writes) is picked up by the worker's tick; the worker is
SIGKILLed mid-training; a new worker gets the task again (Redis visibility timeout, or the
tick's re-dispatch), resumes from the checkpoints (the snapshot is not taken again) and finishes
the run exactly once, promoting its bundle. A monitor crossing on the promoted version then
opens exactly one run."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bundle_runtime.manifest import verify_bundle
from distill_worker.loop.context import LoopContext
from distill_worker.loop.dispatch import monitor_tick
from feedback.models import (
    AuditEntry,
    Conversation,
    DistillRun,
    Message,
    MessageRole,
    Rating,
    RunTrigger,
    Snapshot,
    utcnow,
)
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.runs import RunRepository
from feedback.settings import Settings
from tests.distill_worker.loop_stack import TINY, Stack, loop_stack, seed_demo_corpus

pytestmark = pytest.mark.slow


def _run(stack: Stack) -> DistillRun:
    with stack.sessions() as session:
        [run] = session.scalars(select(DistillRun)).all()
        session.expunge(run)
        return run


def _rated_replies(
    stack: Stack,
    version: str,
    n: int,
    *,
    thumbs: int = -1,
    latency_ms: float = 20.0,
    text: str = "sorry",
) -> None:
    """`n` replies of `version` in the last minute, each rated `thumbs`; the defaults make a
    quality crossing."""
    now = utcnow()
    with stack.sessions() as session, session.begin():
        for i in range(n):
            conv = Conversation(created_at=now - dt.timedelta(seconds=i + 1))
            session.add(conv)
            session.flush()
            reply = Message(
                conversation_id=conv.id,
                seq=1,
                role=MessageRole.ASSISTANT.value,
                text=text,
                model_version=version,
                latency_ms=latency_ms,
                created_at=conv.created_at,
            )
            session.add(reply)
            session.flush()
            session.add(Rating(conversation_id=conv.id, message_id=reply.id, thumbs=thumbs))


def test_a_run_survives_a_killed_worker_and_promotes_once(
    responder_dir: Path, tmp_path: Path
) -> None:
    with loop_stack(tmp_path, responder_dir) as stack:
        assert seed_demo_corpus(stack.sessions) > 50
        with stack.sessions() as session, session.begin():
            run = RunRepository(session).open_run(
                RunTrigger.MANUAL.value, {"reason": "e2e"}, {"kind": "incremental"}
            )
            assert run is not None
            run_id = run.id

        first = stack.start_worker("first")
        stack.wait_for(
            "the run to reach training",
            lambda: (_run(stack).stage or "").startswith("train:stage"),
            timeout=240,
        )
        before = _run(stack)
        assert before.attempts == 1 and before.steps["snapshot"]["done"]
        stack.kill_worker(first)

        stack.start_worker("second")
        stack.wait_for("the run to finish", lambda: _run(stack).finished_at is not None, 420)
        done = _run(stack)
        assert done.id == run_id
        assert done.status == "succeeded", (done.error, stack.log_text())
        assert done.attempts >= 2  # claimed again after the kill
        assert list(done.steps) == ["snapshot", "train", "evaluate", "register", "promote"]
        assert done.steps["evaluate"]["passed"] is True
        assert done.metrics["outcome"] == "promoted"
        with stack.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Snapshot)) == 1
            production = ModelVersionRepository(session).resolve_alias(PRODUCTION)
            assert production is not None and production.id == done.candidate_version_id
            assert production.run_id == run_id
            history = ModelVersionRepository(session).alias_history(PRODUCTION)
            assert [e.model_version_id for e in history] == [production.id]  # promoted once
            audits = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "run.promote")
            ).all()
            assert len(audits) == 1 and audits[0].details["gate"]["passed"] is True
            champion = production.id

        # A crossing on the promoted version opens exactly one run (the workers are stopped;
        # two ticks at once still open one).
        stack.stop_workers()
        _rated_replies(stack, champion, 40)
        settings = Settings(
            data_dir=stack.data_dir, database={"url": stack.db_url}, redis={"url": None}
        )
        ctx = LoopContext(settings)
        sent: list[str] = []
        summaries = [monitor_tick(ctx, lambda rid: sent.append(str(rid)) or "t") for _ in range(2)]
        opened = [s["opened"] for s in summaries if s["opened"]]
        assert len(opened) == 1 and sent == opened
        decisions = [s["evaluations"][0]["decision"] for s in summaries]
        assert decisions == ["opened_run", "disarmed"]
        with stack.sessions() as session:
            assert session.scalar(select(func.count()).select_from(DistillRun)) == 2


def test_a_crossing_promotes_a_new_student_and_the_api_swaps_without_a_failed_request(
    responder_dir: Path, tmp_path: Path
) -> None:
    """Champion serving through a real API process; thumbs-down ratings cross the threshold;
    the worker's own tick opens the run, distils, gates (margins wide: this is about the
    mechanics) and promotes; the API picks the new version up while a client keeps talking."""
    wide = {
        "CHATDISTILL_WORKER__GATE__INTENT_ACCURACY_MARGIN": "1.0",
        "CHATDISTILL_WORKER__GATE__OOS_RECALL_MARGIN": "1.0",
        "CHATDISTILL_WORKER__GATE__REPLY_CHRF_MARGIN": "100",
        "CHATDISTILL_MONITOR__COOLDOWN_MINUTES": "0",
        "CHATDISTILL_RATE_LIMIT__ENABLED": "false",
        "CHATDISTILL_EVENTS__POLL_INTERVAL_S": "2",
    }
    with loop_stack(tmp_path, responder_dir, **wide) as stack:
        seed_demo_corpus(stack.sessions)
        with stack.sessions() as session, session.begin():
            first = RunRepository(session).open_run(RunTrigger.MANUAL.value, {}, {})
            assert first is not None
            first_id = first.id
        stack.start_worker("one")

        def first_done() -> bool:
            with stack.sessions() as session:
                run = session.get(DistillRun, first_id)
                return run is not None and run.finished_at is not None

        stack.wait_for("the first run", first_done, 300)
        with stack.sessions() as session:
            champion = ModelVersionRepository(session).resolve_alias(PRODUCTION)
            assert champion is not None
            champion_id = champion.id

        results: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def talk(base: str) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    started = client.post("/v1/widget/conversations", json={})
                    if started.status_code != 201:
                        results.append((started.status_code, None))
                        continue
                    conv = started.json()
                    reply = client.post(
                        f"/v1/widget/conversations/{conv['conversation_id']}/messages",
                        json={"text": "where is my parcel?"},
                        headers={"authorization": f"Bearer {conv['token']}"},
                    )
                    body = reply.json() if reply.status_code == 201 else {}
                    version = (body.get("reply") or {}).get("model_version")
                    results.append((reply.status_code, version))
                    stop.wait(0.2)  # a steady customer, not a load test

        with stack.api() as base:
            client_thread = threading.Thread(target=talk, args=(base,), daemon=True)
            client_thread.start()
            stack.wait_for("the champion to answer", lambda: len(results) >= 3, 60)

            _rated_replies(stack, champion_id, 40)

            def promoted() -> bool:
                with stack.sessions() as session:
                    current = ModelVersionRepository(session).resolve_alias(PRODUCTION)
                    moved = current is not None and current.id != champion_id
                    return moved and RunRepository(session).active() is None

            stack.wait_for("the crossing's run to promote", promoted, 420)
            with stack.sessions() as session:
                new_id = ModelVersionRepository(session).resolve_alias(PRODUCTION).id  # type: ignore[union-attr]
                runs = session.scalars(select(DistillRun).order_by(DistillRun.created_at)).all()
            stack.wait_for(
                "the API to serve the new version",
                lambda: any(v == new_id for _, v in results[-5:]),
                60,
            )
            stop.set()
            client_thread.join(timeout=60)

        assert [r.trigger for r in runs] == ["manual", "accuracy"]
        assert runs[1].status == "succeeded" and runs[1].candidate_version_id == new_id
        assert runs[1].steps["train"]["warm_start"] == champion_id
        statuses = {code for code, _ in results}
        assert statuses == {201}, [r for r in results if r[0] != 201][:5]
        served = [v for _, v in results if v]
        assert served[0] == champion_id and served[-1] == new_id


def test_a_latency_crossing_trains_a_smaller_int8_student_gated_on_accuracy(
    responder_dir: Path, tmp_path: Path
) -> None:
    """Slow replies (and good ratings) open a compression run: a smaller student from the
    teacher alone (no warm start from a different shape), exported with INT8, and gated on
    accuracy and on being faster than the champion."""
    big = {**TINY, "enc_layers": 2, "dec_hidden": 128, "dec_ffn": 256}
    env = {
        "CHATDISTILL_WORKER__DISTILL": json.dumps(big),
        "CHATDISTILL_WORKER__COMPRESSION": json.dumps({"enc_layers": 1, "dec_hidden": 32}),
        "CHATDISTILL_WORKER__GATE__INTENT_ACCURACY_MARGIN": "1.0",
        "CHATDISTILL_WORKER__GATE__OOS_RECALL_MARGIN": "1.0",
        "CHATDISTILL_WORKER__GATE__REPLY_CHRF_MARGIN": "100",
    }
    with loop_stack(tmp_path, responder_dir, **env) as stack:
        seed_demo_corpus(stack.sessions)
        with stack.sessions() as session, session.begin():
            first = RunRepository(session).open_run(RunTrigger.MANUAL.value, {}, {})
            assert first is not None
        stack.start_worker("one")

        def production() -> str | None:
            with stack.sessions() as session:
                version = ModelVersionRepository(session).resolve_alias(PRODUCTION)
                return version.id if version else None

        stack.wait_for("the champion", lambda: production() is not None, 300)
        champion_id = production()
        # Liked but slow replies: a latency crossing only.
        _rated_replies(stack, champion_id, 40, thumbs=1, latency_ms=1500.0, text="here you go")

        def latency_run() -> DistillRun | None:
            with stack.sessions() as session:
                run = session.scalar(
                    select(DistillRun).where(DistillRun.trigger == RunTrigger.LATENCY.value)
                )
                if run is not None:
                    session.expunge(run)
                return run

        stack.wait_for(
            "the latency run to finish",
            lambda: (run := latency_run()) is not None and run.finished_at is not None,
            300,
        )
        run = latency_run()
        assert run is not None
        assert run.trigger_detail["fired"] == ["latency_p95_ms"]
        assert run.config["compression"] is True and run.config["int8"] is True
        assert (
            run.config["distill"]["enc_layers"] == 1 and run.config["distill"]["dec_hidden"] == 32
        )
        assert run.steps["train"]["warm_start"] is None
        candidate = verify_bundle(Path(run.steps["train"]["bundle_dir"]))
        assert "int8" in candidate.graphs and candidate.student_config["enc_layers"] == 1
        verdict = run.steps["evaluate"]
        faster = verdict["candidate"]["latency_p95_ms"] < verdict["champion"]["latency_p95_ms"]
        assert verdict["passed"] is faster, verdict  # the accuracy margins are wide open here
        if faster:
            assert run.status == "succeeded" and production() == run.candidate_version_id
        else:
            assert run.status == "failed" and production() == champion_id
            assert any("must be faster" in r for r in verdict["reasons"])
