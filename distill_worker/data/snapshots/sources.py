"""Snapshot records from what the store holds: a customer turn with its feedback, or a seed
example. The rules (which label counts, which reply is a target) are in `build`'s docstring."""

from __future__ import annotations

from typing import Any

from distill_worker.data.snapshots.records import SnapshotRecord, example_key
from feedback.models import MessageRole
from feedback.redaction import redact_text
from feedback.repositories.snapshots import FeedbackTurn, SeedRow


def from_turn(turn: FeedbackTurn, min_confidence: float) -> SnapshotRecord:
    intent, intent_source = None, None
    if turn.operator_intent:
        intent, intent_source = turn.operator_intent, "operator"
    elif turn.predicted_intent and (turn.intent_confidence or 0.0) >= min_confidence:
        intent, intent_source = turn.predicted_intent, "predicted"
    reply = reply_source = rejected = None
    reward: float | None = None
    if turn.corrected_reply:
        reply, reply_source = turn.corrected_reply, "correction"
        if turn.reply_role == MessageRole.ASSISTANT.value:
            rejected = turn.reply
    elif turn.agent_reply:
        # A human agent answered after a handoff: theirs is the reference, and the assistant's
        # reply before it (if the bot spoke first) the reply it superseded.
        reply, reply_source = turn.agent_reply, "agent"
        if turn.reply_role == MessageRole.ASSISTANT.value:
            rejected = turn.reply
    elif turn.reply and turn.reward is not None:
        reply, reply_source, reward = turn.reply, "rated", turn.reward
    return _record(
        text=turn.text,
        context=turn.context,
        intent=intent,
        intent_source=intent_source,
        reply=reply,
        reply_source=reply_source,
        reward=reward,
        rejected=rejected,
        origin="feedback",
        source_id=str(turn.message_id),
    )


def from_seed(row: SeedRow) -> SnapshotRecord:
    return _record(
        text=row.text,
        context=row.context,
        intent=row.intent,
        intent_source="seed" if row.intent else None,
        reply=row.reply,
        reply_source=None if row.reply is None else "reference" if row.reward is None else "rated",
        reward=row.reward if row.reply is not None else None,
        rejected=None,
        origin="seed",
        source_id=str(row.id),
        corpus=row.corpus,
    )


def _record(**fields: Any) -> SnapshotRecord:
    """Redact every text once more and compute the key."""
    for name in ("text", "reply", "rejected"):
        if fields[name] is not None:
            fields[name] = redact_text(fields[name])
    fields["context"] = tuple((role, redact_text(text)) for role, text in fields["context"])
    return SnapshotRecord(key=example_key(fields["text"], fields["context"]), **fields)
