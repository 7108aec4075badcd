"""Agents' replies as training data, on the real PostgreSQL store: after a handoff, what a human
agent wrote (through `feedback.handoff`) is the reference reply of the customer turn it answered,
the assistant reply it superseded a reward-head negative, system notices stay out of the context,
and an operator's intent label on the turn labels it; stage 2 counts them as references."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import Session

from distill_worker.data.building import (
    SourceTokenizer,
    intents_with_references,
    reply_examples,
    teacher_messages,
)
from distill_worker.data.snapshots import SnapshotRecord, create_snapshot, load_snapshot
from distill_worker.data.snapshots.records import read_records
from distill_worker.teacher.encoder import locate_minilm
from feedback import handoff
from feedback.models import Conversation, Message, MessageRole, Operator
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import CorrectionRepository
from tests.fixtures.operators import make_operator

AGENT_TEXT = "I have refunded the 40 EUR to your card; it shows within 5 days."
BOT_TEXT = "I am not sure I understood. Could you rephrase?"


def _handed_off(db: Session) -> tuple[Conversation, Message, Message, Operator]:
    """customer -> unsure assistant reply -> handoff -> an operator claims it."""
    repo = ConversationRepository(db)
    conv = repo.create(site="shop")
    customer = repo.add_message(conv, role=MessageRole.CUSTOMER, text="I want my money back")
    bot = repo.add_message(
        conv,
        role=MessageRole.ASSISTANT,
        text=BOT_TEXT,
        intent="order_status",
        intent_confidence=0.31,
        model_version="v1",
    )
    assert handoff.request_human(db, conv.id, reason="low_confidence") is not None
    operator, _ = make_operator(db)
    handoff.claim(db, conv.id, operator)
    return conv, customer, bot, operator


def _rows(path: Path) -> dict[str, SnapshotRecord]:
    return {r.text: r for r in read_records(path)}


def test_an_agents_reply_is_the_reference_and_the_bots_reply_the_negative(
    db: Session, tmp_path: Path
) -> None:
    conv, customer, _, operator = _handed_off(db)
    handoff.agent_reply(db, conv.id, operator, AGENT_TEXT)
    CorrectionRepository(db).add(customer, operator_id=operator.id, corrected_intent="refund")
    # A follow-up the agent answers directly (the bot is quiet), with the agent's e-mail in it.
    repo = ConversationRepository(db)
    repo.add_message(conv, role=MessageRole.CUSTOMER, text="thanks, and the shipping fee?")
    handoff.agent_reply(db, conv.id, operator, "Refunded too. Write to ana.lopez@example.com.")
    handoff.agent_reply(db, conv.id, operator, "Anything else?")

    info = create_snapshot(db, tmp_path / "snaps", run_id=None, heldout_fraction=0.0)
    rows = _rows(info.train_path)
    first = rows["I want my money back"]
    assert (first.reply, first.reply_source, first.rejected) == (AGENT_TEXT, "agent", BOT_TEXT)
    assert (first.intent, first.intent_source) == ("refund", "operator")
    assert first.reward is None  # a reference, not a rating
    follow = rows["thanks, and the shipping fee?"]
    assert follow.reply_source == "agent" and follow.rejected is None
    # The agent's messages before the next customer turn, joined; PII redacted.
    assert follow.reply is not None and follow.reply.endswith("Anything else?")
    assert "ana.lopez@example.com" not in follow.reply and follow.reply.startswith("Refunded too.")
    # Earlier turns as the student reads them when it serves: no system notice, no agent turn.
    assert follow.context == (("customer", "I want my money back"), ("assistant", BOT_TEXT))
    notices = [m.text for m in repo.messages(conv.id) if m.role == MessageRole.SYSTEM.value]
    assert handoff.JOINED_NOTICE in notices  # they exist in the store, and stay out

    train, _ = load_snapshot(info.path)
    assert intents_with_references(train, 1) == {"refund"}
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=64, context_turns=4)
    examples = reply_examples(
        [],
        [r for r in train if r.reply or r.rejected],
        source,
        lambda text: [len(word) for word in text.split()],
        eos_id=0,
        max_reply_tokens=32,
        seed=0,
    )
    references = [e for e in examples if e.source == "reference"]
    assert [(e.weight, e.reward_label) for e in references] == [(1.0, 1.0), (1.0, 1.0)]
    agent_ids = [len(word) for word in AGENT_TEXT.split()]
    assert agent_ids in [e.reply_ids for e in references]
    # The superseded bot reply is a reward-head negative that never trains the decoder (the
    # follow-up, unlabelled, also gets the refund reply as another intent's negative).
    negatives = [e for e in examples if e.source == "negative"]
    assert all((e.weight, e.reward_label) == (0.0, 0.0) for e in negatives)
    assert [len(word) for word in BOT_TEXT.split()] in [e.reply_ids for e in negatives]


def test_an_agent_reply_after_the_snapshot_reaches_the_next_one(
    db: Session, tmp_path: Path
) -> None:
    conv, _, _, operator = _handed_off(db)
    before = create_snapshot(db, tmp_path / "snaps", run_id=None, heldout_fraction=0.0)
    assert _rows(before.train_path)["I want my money back"].reply is None  # unrated bot reply
    handoff.agent_reply(db, conv.id, operator, AGENT_TEXT)
    after = create_snapshot(db, tmp_path / "snaps", run_id=None, heldout_fraction=0.0)
    assert after.counts["new_feedback"] == 1
    row = _rows(after.train_path)["I want my money back"]
    assert (row.reply, row.reply_source, row.rejected) == (AGENT_TEXT, "agent", BOT_TEXT)


def test_an_agent_turn_in_the_context_goes_to_the_teacher_as_the_company() -> None:
    chat = teacher_messages(None, [("customer", "hi"), ("agent", "Hello, Ana here.")])
    assert [m["role"] for m in chat] == ["system", "user", "assistant"]


def test_old_snapshot_files_that_say_operator_read_as_agent(tmp_path: Path) -> None:
    record = SnapshotRecord(
        key="a" * 64,
        text="where is my order",
        context=(),
        intent=None,
        intent_source=None,
        reply="It left the warehouse today.",
        reply_source="agent",
        reward=None,
        rejected=None,
        origin="feedback",
        source_id="m1",
    )
    old = json.loads(record.to_json()) | {"reply_source": "operator"}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(old) + "\n", encoding="utf-8")
    assert read_records(path) == [record]
