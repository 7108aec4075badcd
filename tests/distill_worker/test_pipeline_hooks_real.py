"""An incremental run for real (slow: the real default teachers): snapshot A -> full run ->
bundle; a new intent and new feedback arrive -> snapshot B -> warm-started run from the bundle,
with every step reported in order and the held-out split of A kept in B."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bundle_runtime.manifest import verify_bundle
from distill_worker.data.demo_corpus import demo_knowledge_path, demo_utterances
from distill_worker.data.importers.records import SeedRecord
from distill_worker.data.importers.store import store_records
from distill_worker.data.snapshots import create_snapshot, load_snapshot
from distill_worker.pipeline import STEP_START, DistillRequest, run_distillation
from distill_worker.run_config import RunConfig
from feedback.models import MessageRole
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import RatingRepository
from tests.fixtures.distill_runs import tiny_config

pytestmark = pytest.mark.slow

TINY = tiny_config(
    stage1_epochs=2,
    stage2_epochs=1,
    max_reply_tokens=16,
    best_of_n=2,  # the first run has no champion to judge; the second one does
)


def _import(db: Session, rows: list[tuple[str, str]]) -> None:
    store_records(db, "jsonl", "demo.jsonl", [SeedRecord(text=t, intent=i) for t, i in rows])


def test_incremental_run_from_snapshot_with_warm_start(
    db: Session, responder_dir: Path, tmp_path: Path
) -> None:
    rows = demo_utterances(seed=0, per_intent=6)
    old_intents = sorted({r.intent or "" for r in rows})
    _import(db, [(r.text, r.intent or "") for r in rows if r.intent != old_intents[-1]])
    snap_a = create_snapshot(db, tmp_path / "snaps", run_id=None)

    def request(name: str, snapshot: Path, **extra: object) -> DistillRequest:
        return DistillRequest(
            out_dir=tmp_path / f"bundle_{name}",
            work_dir=tmp_path / f"run_{name}",
            responder_dir=responder_dir,
            config=RunConfig(
                distill=TINY, reply_budget=4, eval_replies=1, teacher_epochs=1, int8=False
            ),
            knowledge_path=demo_knowledge_path(),
            snapshot_dir=snapshot,
            **extra,  # type: ignore[arg-type]
        )

    first = run_distillation(request("a", snap_a.path), log=lambda _: None)
    assert "first run" in first.metrics["best_of_n"]["skipped"]
    labels_a = verify_bundle(first.bundle_dir).intent_labels
    assert old_intents[-1] not in labels_a

    # A new intent is imported and a customer conversation (two turns, rated) arrives.
    new_intent = old_intents[-1]
    _import(db, [(r.text, new_intent) for r in rows if r.intent == new_intent])
    repo = ConversationRepository(db)
    conv = repo.create(site="shop")
    repo.add_message(conv, role=MessageRole.CUSTOMER, text="hi, I ordered shoes last week")
    repo.add_message(conv, role=MessageRole.ASSISTANT, text="Hello! How can I help?")
    repo.add_message(conv, role=MessageRole.CUSTOMER, text="they still have not arrived")
    reply = repo.add_message(
        conv,
        role=MessageRole.ASSISTANT,
        text="Sorry! Let me check the tracking for you.",
        intent=labels_a[0],
        intent_confidence=0.99,
    )
    RatingRepository(db).rate_message(reply, thumbs=1)
    snap_b = create_snapshot(db, tmp_path / "snaps", run_id=None, replay_fraction=0.5)
    train_b, held_b = load_snapshot(snap_b.path)
    _, held_a = load_snapshot(snap_a.path)
    assert {u.text for u in held_a} <= {u.text for u in held_b}
    assert any(u.context for u in train_b + held_b)  # the second turn carries the first

    steps: list[tuple[str, float]] = []
    second = run_distillation(
        request(
            "b",
            snap_b.path,
            warm_start_bundle=first.bundle_dir,
            on_step=lambda name, fraction: steps.append((name, fraction)),
            should_stop=lambda: False,
        ),
        log=lambda _: None,
    )
    assert steps == list(STEP_START.items())
    manifest = verify_bundle(second.bundle_dir)
    assert manifest.intent_labels == [*labels_a, new_intent]  # old rows first, new appended
    warm = second.metrics["warm_start"]
    assert warm["intents_added"] == [new_intent] and warm["intents_kept"] == len(labels_a)
    assert warm["imprinted"] == [new_intent]  # its head row starts from its examples
    assert warm["decoder_tokens_kept"] == len(verify_bundle(first.bundle_dir).decoder_vocab or [])
    assert second.metrics["snapshot"]["content_hash"] == snap_b.content_hash
    assert second.metrics["dev_rows"] == len(held_b)
    best = second.metrics["best_of_n"]
    assert best["scored_by"] == first.bundle_dir.name and best["skipped"] is None
    assert best["prompts"] == second.metrics["reply_budget"]["prompts"] == 4
    assert 1.0 <= best["mean_candidates"] <= 2.0 and best["variant_cache"]["misses"] == 4
