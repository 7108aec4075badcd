"""Snapshots on the real PostgreSQL store: what goes in, what stays out, the fixed held-out split,
replay, dedup, idempotency per run, crash-safe folders, PII and multi-turn context."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bundle_runtime.source import format_source
from distill_worker.data.snapshots import (
    SnapshotError,
    SnapshotInfo,
    SnapshotRecord,
    create_snapshot,
    load_snapshot,
)
from distill_worker.data.snapshots.records import read_records
from feedback.models import Conversation, DistillRun, Message, MessageRole, Snapshot
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from feedback.repositories.seeds import NewSeedExample, SeedRepository


def _seed(db: Session, rows: list[tuple[str, str | None]], corpus: str = "banking77") -> None:
    examples = [
        NewSeedExample(
            corpus=corpus,
            split="train",
            text=text,
            context=[],
            intent=intent,
            reply=None,
            reward=None,
            meta={},
            content_hash=hashlib.sha256(f"{corpus}:{text}:{intent}".encode()).hexdigest(),
        )
        for text, intent in rows
    ]
    SeedRepository(db).add_import(
        format=corpus, source="test.csv", file_sha256="0" * 64, examples=examples
    )


def _exchange(
    db: Session,
    text: str,
    reply: str = "Here is what I found.",
    *,
    intent: str | None = "order_status",
    confidence: float = 0.95,
    conversation: Conversation | None = None,
) -> tuple[Conversation, Message, Message]:
    repo = ConversationRepository(db)
    conv = conversation or repo.create(site="shop")
    customer = repo.add_message(conv, role=MessageRole.CUSTOMER, text=text)
    answer = repo.add_message(
        conv,
        role=MessageRole.ASSISTANT,
        text=reply,
        intent=intent,
        intent_confidence=confidence,
        model_version="v1",
    )
    return conv, customer, answer


def _records(info: SnapshotInfo) -> tuple[list[SnapshotRecord], list[SnapshotRecord]]:
    return read_records(info.train_path), read_records(info.heldout_path)


def _by_text(records: list[SnapshotRecord]) -> dict[str, SnapshotRecord]:
    return {r.text: r for r in records}


def _run(db: Session) -> DistillRun:
    run = DistillRun(trigger="manual", status="succeeded")
    db.add(run)
    db.flush()
    return run


def test_first_snapshot_labels_replies_ratings_corrections_and_exclusions(
    db: Session, tmp_path: Path
) -> None:
    _seed(db, [(f"card question {i}", "card_arrival") for i in range(6)])
    _, _, up = _exchange(db, "where is my parcel?", intent="order_status", confidence=0.97)
    RatingRepository(db).rate_message(up, thumbs=1)
    _, _, down = _exchange(db, "cancel it now", "Sure!", intent="cancel_order", confidence=0.95)
    RatingRepository(db).rate_message(down, thumbs=-1)
    _exchange(db, "hmm not sure what to ask", intent="order_status", confidence=0.4)
    _, low, low_reply = _exchange(db, "refund please", intent="order_status", confidence=0.3)
    CorrectionRepository(db).add(low, operator_id=None, corrected_intent="refund")
    _, _, wrong = _exchange(db, "do you ship abroad", "We sell shoes.", intent="shipping")
    CorrectionRepository(db).add(
        wrong, operator_id=None, corrected_text="Yes, we ship to 30 countries."
    )
    _, _, spam = _exchange(db, "buy cheap watches at spam site", intent="other")
    CorrectionRepository(db).add(spam, operator_id=None, exclude_from_training=True)

    info = create_snapshot(db, tmp_path / "snaps", run_id=None, heldout_fraction=0.0)
    train, heldout = _records(info)
    assert heldout == []
    rows = _by_text(train)
    assert "buy cheap watches at spam site" not in rows  # excluded by an operator
    assert info.counts["excluded"] == 1
    assert rows["where is my parcel?"].intent == "order_status"
    assert rows["where is my parcel?"].intent_source == "predicted"
    assert (rows["where is my parcel?"].reply_source, rows["where is my parcel?"].reward) == (
        "rated",
        1.0,
    )
    assert (rows["cancel it now"].reply, rows["cancel it now"].reward) == ("Sure!", 0.0)
    assert rows["hmm not sure what to ask"].intent is None  # confidence 0.4 is no label
    assert rows["hmm not sure what to ask"].reply is None  # unrated student reply: no target
    assert (rows["refund please"].intent, rows["refund please"].intent_source) == (
        "refund",
        "operator",
    )
    ship = rows["do you ship abroad"]
    assert (ship.reply, ship.reply_source, ship.rejected) == (
        "Yes, we ship to 30 countries.",
        "correction",
        "We sell shoes.",
    )
    assert info.counts["new_seed"] == 6 and info.counts["new_feedback"] == 5
    report = json.loads(info.report_path.read_text())
    assert report["balance"]["intents"]["card_arrival"] == {"train": 6, "heldout": 0}
    assert report["content_hash"] == info.content_hash == info.path.name
    assert info.path.parent == tmp_path / "snaps"
    assert not list((tmp_path / "snaps").glob(".staging-*"))
    utterances, _ = load_snapshot(info.path)
    loaded = {u.text: u for u in utterances}
    assert loaded["cancel it now"].reward == 0.0
    assert loaded["do you ship abroad"].rejected == "We sell shoes."
    assert low_reply.text == "Here is what I found."


def test_incremental_snapshot_new_once_replay_sampled_heldout_fixed(
    db: Session, tmp_path: Path
) -> None:
    intents = ("card_arrival", "refund", "order_status")
    _seed(db, [(f"{intent} seed {i}", intent) for intent in intents for i in range(40)])
    for i in range(10):
        _exchange(db, f"first batch question {i}", intent="refund", confidence=0.99)
    first = create_snapshot(db, tmp_path, run_id=_run(db).id, replay_fraction=0.25, seed=3)
    train1, held1 = _records(first)
    assert first.counts["replay"] == 0 and first.counts["new_feedback"] + len(held1) >= 10
    assert {r.key for r in train1}.isdisjoint({r.key for r in held1})
    per_intent = {i: sum(1 for r in held1 if r.intent == i) for i in intents}
    assert per_intent == {"card_arrival": 4, "refund": 5, "order_status": 4}  # stratified

    for i in range(6):
        _exchange(db, f"second batch question {i}", intent="order_status", confidence=0.99)
    second = create_snapshot(db, tmp_path, run_id=_run(db).id, replay_fraction=0.25, seed=3)
    train2, held2 = _records(second)
    texts2 = [r.text for r in train2] + [r.text for r in held2]
    # New feedback exactly once: the six new turns, nothing of the first batch as "new".
    assert second.counts["new_feedback"] + second.counts["heldout_added"] == 6
    assert second.counts["new_seed"] == 0
    assert sum(t.startswith("second batch") for t in texts2) == 6
    # Replay: a quarter of each intent of what the first snapshot trained on.
    assert second.counts["replay_pool"] == len(train1)
    assert second.counts["replay"] == pytest.approx(0.25 * len(train1), abs=3)
    replayed = {r.key for r in train2} & {r.key for r in train1}
    assert len(replayed) == second.counts["replay"]
    assert {r.intent for r in train2 if r.key in replayed} == set(intents)
    # Held-out: the first snapshot's held-out set stays whole; nothing trained on moves there.
    assert {r.key for r in held1} <= {r.key for r in held2}
    assert {r.key for r in held2}.isdisjoint({r.key for r in train1})
    assert {r.key for r in held2}.isdisjoint({r.key for r in train2})
    row = db.get(Snapshot, second.id)
    assert row is not None and row.parent_id == first.id
    # A different seed samples different replay, but the held-out split does not move.
    third = create_snapshot(db, tmp_path, run_id=_run(db).id, replay_fraction=0.25, seed=4)
    train3, held3 = _records(third)
    assert [r.key for r in held3] == [r.key for r in held2]
    assert {r.key for r in train3} != {r.key for r in train2}


def test_idempotent_per_run_and_same_content_reuses_folder(db: Session, tmp_path: Path) -> None:
    _seed(db, [(f"q {i}", "a" if i % 2 else "b") for i in range(20)])
    run = _run(db)
    first = create_snapshot(db, tmp_path, run_id=run.id)
    _exchange(db, "something new arrives after the first call")
    again = create_snapshot(db, tmp_path, run_id=run.id)
    assert again.id == first.id and again.content_hash == first.content_hash
    assert (first.created, again.created) == (True, False)
    assert db.scalar(select(func.count()).select_from(Snapshot)) == 1
    assert len([p for p in tmp_path.iterdir()]) == 1


def test_dedup_across_feedback_and_seed_prefers_feedback_labels(
    db: Session, tmp_path: Path
) -> None:
    _seed(db, [("Where is my order?", "order_status"), ("where is   MY order?", "order_status")])
    _seed(db, [("Where is my order?", "delivery")], corpus="clinc150")
    _, customer, _ = _exchange(db, "where is my order?", intent="order_status", confidence=0.2)
    CorrectionRepository(db).add(customer, operator_id=None, corrected_intent="track_order")
    _exchange(db, "WHERE is my order?", intent="order_status", confidence=0.2)
    info = create_snapshot(db, tmp_path, run_id=None, heldout_fraction=0.0)
    train, _ = _records(info)
    same = [r for r in train if " ".join(r.text.lower().split()) == "where is my order?"]
    assert len(same) == 1
    assert info.counts["duplicates_merged"] == 4
    # The operator's label is the newest word; a later unlabelled duplicate keeps it.
    assert (same[0].intent, same[0].intent_source) == ("track_order", "operator")


def test_later_exclusion_drops_the_turn_from_replay_and_heldout(
    db: Session, tmp_path: Path
) -> None:
    _seed(db, [(f"seed {i}", "a" if i % 2 else "b") for i in range(30)])
    messages = [
        _exchange(db, f"customer turn {i}", intent="a", confidence=0.99)[1] for i in range(12)
    ]
    first = create_snapshot(db, tmp_path, run_id=None, replay_fraction=1.0)
    train1, held1 = _records(first)
    ids1 = {r.source_id for r in train1 + held1}
    assert {str(m.id) for m in messages} <= ids1
    for m in messages:
        CorrectionRepository(db).add(m, operator_id=None, exclude_from_training=True)
    second = create_snapshot(db, tmp_path, run_id=None, replay_fraction=1.0)
    train2, held2 = _records(second)
    assert not {str(m.id) for m in messages} & {r.source_id for r in train2 + held2}
    assert second.counts["excluded"] == 12
    assert len(train2) + len(held2) == 30


def test_pii_stays_redacted_in_snapshot_files(db: Session, tmp_path: Path) -> None:
    email, card = "jane.doe@example.com", "4111 1111 1111 1111"
    _seed(db, [(f"my mail is {email}", "contact"), ("plain seed text", "other")])
    conv, _, answer = _exchange(db, f"charge my card {card} and mail {email}", intent="pay")
    RatingRepository(db).rate_message(answer, thumbs=1)
    CorrectionRepository(db).add(
        answer, operator_id=None, corrected_text=f"We will write to {email} shortly."
    )
    ConversationRepository(db).add_message(conv, role=MessageRole.CUSTOMER, text="thanks!")
    info = create_snapshot(db, tmp_path, run_id=None, heldout_fraction=0.0)
    blob = "".join(p.read_text() for p in info.path.iterdir())
    assert email not in blob and card not in blob and "4111" not in blob
    assert "[EMAIL]" in blob
    train, _ = load_snapshot(info.path)
    assert all(email not in " ".join(t for _, t in u.turns()) for u in train)


def test_multi_turn_context_is_carried_and_bounded(db: Session, tmp_path: Path) -> None:
    _seed(db, [(f"seed {i}", "a" if i % 2 else "b") for i in range(10)])
    conv, _, _ = _exchange(db, "turn one", "answer one")
    for n in ("two", "three", "four"):
        _exchange(db, f"turn {n}", f"answer {n}", conversation=conv)
    info = create_snapshot(db, tmp_path, run_id=None, heldout_fraction=0.0, max_context_turns=4)
    rows = _by_text(_records(info)[0])
    assert rows["turn one"].context == ()
    assert rows["turn two"].context == (("customer", "turn one"), ("assistant", "answer one"))
    assert rows["turn four"].context == (
        ("customer", "turn two"),
        ("assistant", "answer two"),
        ("customer", "turn three"),
        ("assistant", "answer three"),
    )
    train, _ = load_snapshot(info.path)
    four = next(u for u in train if u.text == "turn four")
    assert four.turns()[-1] == ("customer", "turn four") and len(four.turns()) == 5
    # What the student's encoder reads (training and serving alike): the last 4 turns.
    assert format_source(four.turns(), 4) == (
        "assistant: answer two | customer: turn three | assistant: answer three | "
        "customer: turn four"
    )


def test_tampered_snapshot_is_refused_and_empty_store_explains(db: Session, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="nothing to train on"):
        create_snapshot(db, tmp_path, run_id=None)
    _seed(db, [(f"q {i}", "a" if i % 2 else "b") for i in range(10)])
    info = create_snapshot(db, tmp_path, run_id=None)
    with info.train_path.open("a") as handle:
        handle.write(info.train_path.read_text().splitlines()[0] + "\n")
    with pytest.raises(SnapshotError, match="content hash"):
        load_snapshot(info.path)
    with pytest.raises(SnapshotError, match="replay_fraction"):
        create_snapshot(db, tmp_path, run_id=None, replay_fraction=1.5)


def test_failed_insert_leaves_no_row_and_no_half_folder(db: Session, tmp_path: Path) -> None:
    _seed(db, [(f"q {i}", "a" if i % 2 else "b") for i in range(10)])
    with pytest.raises(IntegrityError):  # no such run: the row cannot be inserted
        create_snapshot(db, tmp_path, run_id=uuid.uuid4())
    assert db.scalar(select(func.count()).select_from(Snapshot)) == 0
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".staging")
    train, heldout = load_snapshot(folders[0])  # complete: the next identical snapshot reuses it
    assert len(train) + len(heldout) == 10
    info = create_snapshot(db, tmp_path, run_id=None)
    assert info.path == folders[0]


def test_settle_time_leaves_the_newest_feedback_for_the_next_snapshot(
    db: Session, tmp_path: Path
) -> None:
    _seed(db, [(f"q {i}", "a" if i % 2 else "b") for i in range(10)])
    _exchange(db, "a message written a moment ago")
    # Seeds imported a moment ago are also newer than now - 1 hour: nothing to train on yet.
    with pytest.raises(SnapshotError, match="nothing to train on"):
        create_snapshot(db, tmp_path, run_id=None, settle_seconds=3600)
    info = create_snapshot(db, tmp_path, run_id=None)
    assert info.counts["new_feedback"] + info.counts["heldout_added"] >= 1
