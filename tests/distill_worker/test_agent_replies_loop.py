"""The loop closes on agents' replies (slow: two real runs with the default teachers): a
champion is trained; customers then ask what it cannot answer and ask for a human, and an
agent answers (all through the widget and operator API); the next snapshot takes the agents'
replies as references, and the run trained on it answers those conversations closer
to the agents than the champion does (chrF, `metrics["agent_replies"]`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from distill_worker.config import DistillConfig
from distill_worker.data.demo_corpus import demo_knowledge_path, demo_utterances
from distill_worker.data.importers.records import SeedRecord
from distill_worker.data.importers.store import store_records
from distill_worker.data.snapshots import create_snapshot
from distill_worker.data.snapshots.records import read_records
from distill_worker.pipeline import DistillRequest, run_distillation
from distill_worker.run_config import RunConfig
from tests.fixtures.distill_runs import tiny_config
from tests.fixtures.operators import auth, login, make_operator

pytestmark = pytest.mark.slow

TINY = tiny_config(stage1_epochs=1, stage2_epochs=2)
AGENT_ANSWER = "Gift cards work online and in our stores, and they never expire."
QUESTIONS = [
    "can I pay with a gift card",
    "do you take gift cards online",
    "my gift card, does it expire?",
    "is a gift card valid in the store",
    "gift card question: where can I use it",
    "can I use my birthday gift card here",
    "do gift cards run out after a year",
    "will the shop accept my gift card",
]


def _request(
    tmp_path: Path,
    name: str,
    responder_dir: Path,
    snapshot: Path,
    distill: DistillConfig = TINY,
    **extra: Any,
) -> DistillRequest:
    config = RunConfig(
        distill=distill, reply_budget=4, eval_replies=1, teacher_epochs=1, int8=False
    )
    return DistillRequest(
        out_dir=tmp_path / f"bundle_{name}",
        work_dir=tmp_path / f"run_{name}",
        responder_dir=responder_dir,
        config=config,
        knowledge_path=demo_knowledge_path(),
        snapshot_dir=snapshot,
        **extra,
    )


def test_a_run_learns_the_agents_replies_and_beats_the_champion_on_them(
    db: Session, client: TestClient, responder_dir: Path, tmp_path: Path
) -> None:
    rows = demo_utterances(seed=0, per_intent=5)
    store_records(
        db, "jsonl", "demo.jsonl", [SeedRecord(text=r.text, intent=r.intent) for r in rows]
    )
    snap_a = create_snapshot(db, tmp_path / "snaps", run_id=None)
    champion = run_distillation(
        _request(tmp_path, "a", responder_dir, snap_a.path), log=lambda _: None
    )
    assert "agent_replies" not in champion.metrics  # no agent has answered anything yet

    # Through the API, as in production: the customer writes (no model is deployed in this
    # app, so the message is stored and not answered), asks for a human; an operator claims the
    # conversation and answers it.
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    for question in QUESTIONS:
        started = client.post("/v1/widget/conversations", json={}).json()
        cid, widget = started["conversation_id"], auth(started["token"])
        path = f"/v1/widget/conversations/{cid}"
        asked = client.post(f"{path}/messages", json={"text": question}, headers=widget)
        assert asked.status_code == 503 and asked.json()["error"]["code"] == "no_model_deployed"
        assert client.post(f"{path}/handoff", json={}, headers=widget).status_code == 200
        ops = f"/v1/operator/conversations/{cid}"
        assert client.post(f"{ops}/claim", headers=headers).status_code == 200
        answered = client.post(f"{ops}/messages", json={"text": AGENT_ANSWER}, headers=headers)
        assert answered.status_code == 201, answered.text
    snap_b = create_snapshot(db, tmp_path / "snaps", run_id=None, replay_fraction=0.5)
    snapshot_rows = [
        *read_records(snap_b.train_path),
        *read_records(snap_b.heldout_path),
    ]
    agents = [r for r in snapshot_rows if r.reply_source == "agent"]
    assert sorted(r.text for r in agents) == sorted(QUESTIONS)
    assert {r.reply for r in agents} == {AGENT_ANSWER}

    candidate = run_distillation(
        _request(
            tmp_path,
            "b",
            responder_dir,
            snap_b.path,
            # Enough decoder steps for a tiny decoder to take up a few references (the
            # champion's stage 2 was two epochs of teacher replies).
            replace(TINY, stage2_epochs=30, stage2_lr=2e-3),
            warm_start_bundle=champion.bundle_dir,
        ),
        log=lambda _: None,
    )
    figures = candidate.metrics["agent_replies"]
    assert figures["rows"] == len(QUESTIONS)
    assert figures["champion"] == champion.bundle_dir.name
    # Measured: 100 against 13 (the candidate writes the agents' answer; the champion never
    # saw it). A wide margin, so that noise in the tiny runs cannot decide it.
    assert figures["chrf_candidate"] > figures["chrf_champion"] + 20, figures
    assert figures["examples"][0]["agent"] == AGENT_ANSWER
