"""Snapshot rows, and the feedback and seed examples a new snapshot is built from.

All SQL for snapshots lives here; `distill_worker.data.snapshots` turns what this returns into
files. Every text returned was PII-redacted when it was written (messages, corrections and seed
examples are redacted by their repositories); nothing here reads anything un-redacted.

What one customer turn carries (`FeedbackTurn`):

* its earlier turns, bounded to `max_context_turns`, oldest first: the customer's and the
  assistant's messages, the turns the student reads when it serves (`chat_api.replies.model_turns`);
  system notices and agents' messages are left out, as serving leaves them out;
* the reply that followed it (the next assistant or agent message before the next customer
  message), the intent the student predicted for it and its confidence;
* what human agents answered it (`agent_reply`: their messages before the next customer message,
  joined): after a handoff, the reference reply for the turn, and the assistant reply before it
  the reply the agent superseded;
* the newest operator intent label on the turn, its reply or the agent's answer;
* the newest operator reply correction on that reply;
* the reply's rating as a reward: thumbs up 1 / down 0, else CSAT 4-5 -> 1, 1-2 -> 0 (3 is
  neutral); a conversation's CSAT stands in for replies that have no rating of their own;
* whether an operator excluded the turn or its reply from training.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, union
from sqlalchemy.orm import Session

from feedback.models import (
    Correction,
    Message,
    MessageRole,
    Rating,
    SeedExample,
    SeedImport,
    Snapshot,
)

_CHUNK = 500
ASSISTANT = MessageRole.ASSISTANT.value
# The roles of the earlier turns a record carries: those the student reads when it serves
# (`chat_api.replies.model_turns`); change both together.
_CONTEXT_ROLES = (MessageRole.CUSTOMER.value, ASSISTANT)


@dataclass(frozen=True)
class FeedbackTurn:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    text: str
    context: tuple[tuple[str, str], ...]  # earlier (role, text), oldest first
    reply: str | None  # the reply as sent (assistant or agent)
    reply_role: str | None  # "assistant" | "agent"
    agent_reply: str | None  # what agents answered the turn (their messages, joined), if any
    predicted_intent: str | None
    intent_confidence: float | None
    operator_intent: str | None
    corrected_reply: str | None
    reward: float | None  # 1 good, 0 bad, None: not rated (or neutral)
    excluded: bool
    changed_at: dt.datetime  # newest of the turn, its reply, their labels and ratings


@dataclass(frozen=True)
class SeedRow:
    id: uuid.UUID
    corpus: str
    text: str
    context: tuple[tuple[str, str], ...]
    intent: str | None
    reply: str | None
    reward: float | None


def rating_reward(thumbs: int | None, csat: int | None) -> float | None:
    """Thumbs win over CSAT; CSAT 3 is neutral (no label)."""
    if thumbs is not None:
        return 1.0 if thumbs > 0 else 0.0
    if csat is None or csat == 3:
        return None
    return 1.0 if csat >= 4 else 0.0


class SnapshotRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- snapshot rows ---------------------------------------------------------------------

    def for_run(self, run_id: uuid.UUID) -> Snapshot | None:
        return self.session.scalars(select(Snapshot).where(Snapshot.run_id == run_id)).first()

    def get(self, snapshot_id: uuid.UUID) -> Snapshot | None:
        return self.session.get(Snapshot, snapshot_id)

    def latest(self) -> Snapshot | None:
        return self.session.scalars(
            select(Snapshot).order_by(Snapshot.created_at.desc(), Snapshot.id).limit(1)
        ).first()

    def all(self) -> Sequence[Snapshot]:
        """Every snapshot, oldest first."""
        return self.session.scalars(
            select(Snapshot).order_by(Snapshot.created_at, Snapshot.id)
        ).all()

    def add(self, snapshot: Snapshot) -> Snapshot:
        """Insert inside a savepoint, so a duplicate `run_id` (a concurrent call for the same
        run) raises IntegrityError without spoiling the caller's transaction."""
        with self.session.begin_nested():
            self.session.add(snapshot)
            self.session.flush()
        return snapshot

    # --- what a snapshot is built from ------------------------------------------------------

    def feedback_turns(
        self, *, after: dt.datetime | None, until: dt.datetime, max_context_turns: int = 8
    ) -> list[FeedbackTurn]:
        """Customer turns whose text, reply, labels or ratings changed in (after, until]."""
        window = _window(after, until)
        active = union(
            select(Message.conversation_id).where(*window(Message.created_at)),
            select(Correction.conversation_id).where(*window(Correction.created_at)),
            select(Rating.conversation_id).where(*window(Rating.updated_at)),
        ).subquery()
        ids = list(self.session.scalars(select(active.c.conversation_id)).all())
        turns = [
            t
            for t in self._turns(ids, until, max_context_turns)
            if after is None or t.changed_at > after
        ]
        return sorted(turns, key=lambda t: (t.changed_at, str(t.message_id)))

    def seed_rows(self, *, after: dt.datetime | None, until: dt.datetime) -> list[SeedRow]:
        """Seed examples whose import finished in (after, until], in a stable order."""
        stmt = (
            select(SeedExample)
            .join(SeedImport, SeedImport.id == SeedExample.import_id)
            .where(*_window(after, until)(SeedImport.created_at))
            .order_by(SeedExample.content_hash)
        )
        return [
            SeedRow(
                id=e.id,
                corpus=e.corpus,
                text=e.text,
                context=tuple((str(role), str(text)) for role, text in e.context),
                intent=e.intent,
                reply=e.reply,
                reward=e.reward,
            )
            for e in self.session.scalars(stmt)
        ]

    # --- assembling turns -------------------------------------------------------------------

    def _turns(
        self, conversation_ids: list[uuid.UUID], until: dt.datetime | None, max_context: int
    ) -> list[FeedbackTurn]:
        out: list[FeedbackTurn] = []
        for start in range(0, len(conversation_ids), _CHUNK):
            chunk = conversation_ids[start : start + _CHUNK]
            messages = self._rows(
                Message, Message.conversation_id, chunk, Message.created_at, until
            )
            corrections = self._rows(
                Correction, Correction.conversation_id, chunk, Correction.created_at, until
            )
            ratings = self._rows(Rating, Rating.conversation_id, chunk, Rating.updated_at, until)
            by_conv: dict[uuid.UUID, list[Message]] = defaultdict(list)
            for m in messages:
                by_conv[m.conversation_id].append(m)
            fixes: dict[uuid.UUID, list[Correction]] = defaultdict(list)
            for c in sorted(corrections, key=lambda c: (c.created_at, str(c.id))):
                fixes[c.message_id].append(c)
            rated = {r.message_id: r for r in ratings if r.message_id is not None}
            conv_csat = {r.conversation_id: r for r in ratings if r.message_id is None}
            for conv_id, conv_messages in by_conv.items():
                out.extend(
                    _conversation_turns(
                        sorted(conv_messages, key=lambda m: m.seq),
                        fixes,
                        rated,
                        conv_csat.get(conv_id),
                        max_context,
                    )
                )
        return out

    def _rows(
        self,
        model: Any,
        conv_column: Any,
        ids: list[uuid.UUID],
        stamp: Any,
        until: dt.datetime | None,
    ) -> Sequence[Any]:
        stmt = select(model).where(conv_column.in_(ids))
        if until is not None:
            stmt = stmt.where(stamp <= until)
        return self.session.scalars(stmt).all()


def _window(after: dt.datetime | None, until: dt.datetime) -> Any:  # column -> list of conditions
    def conditions(column: Any) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = [column <= until]
        if after is not None:
            out.append(column > after)
        return out

    return conditions


def _conversation_turns(
    messages: list[Message],
    fixes: dict[uuid.UUID, list[Correction]],
    rated: dict[uuid.UUID | None, Rating],
    conv_csat: Rating | None,
    max_context: int,
) -> list[FeedbackTurn]:
    turns: list[FeedbackTurn] = []
    history: list[tuple[str, str]] = []
    speaking = [m for m in messages if m.role != MessageRole.SYSTEM.value]
    for i, m in enumerate(speaking):
        if m.role == MessageRole.CUSTOMER.value:
            answers: list[Message] = []
            for later in speaking[i + 1 :]:
                if later.role == MessageRole.CUSTOMER.value:
                    break
                answers.append(later)
            reply = answers[0] if answers else None
            agents = [a for a in answers if a.role == MessageRole.AGENT.value]
            own = fixes.get(m.id, [])
            on_answers = [f for a in answers for f in fixes.get(a.id, [])]
            labels = [c for c in [*own, *on_answers] if c.corrected_intent is not None]
            labels.sort(key=lambda c: (c.created_at, str(c.id)))
            on_reply = fixes.get(reply.id, []) if reply is not None else []
            texts = [c for c in on_reply if c.corrected_text is not None]
            rating = rated.get(reply.id) if reply is not None else None
            if rating is None and reply is not None and reply.role == ASSISTANT:
                rating = conv_csat
            # The student's prediction rides on its reply; an agent's message carries none.
            predicted = reply if reply is not None and reply.role == ASSISTANT else m
            stamps = [m.created_at, *(c.created_at for c in [*own, *on_answers])]
            stamps.extend(a.created_at for a in answers)
            if rating is not None:
                stamps.append(rating.updated_at)
            turns.append(
                FeedbackTurn(
                    message_id=m.id,
                    conversation_id=m.conversation_id,
                    text=m.text,
                    context=tuple(history[-max_context:]) if max_context > 0 else (),
                    reply=reply.text if reply is not None else None,
                    reply_role=reply.role if reply is not None else None,
                    agent_reply=" ".join(a.text for a in agents) if agents else None,
                    predicted_intent=predicted.intent,
                    intent_confidence=predicted.intent_confidence,
                    operator_intent=labels[-1].corrected_intent if labels else None,
                    corrected_reply=texts[-1].corrected_text if texts else None,
                    reward=rating_reward(rating.thumbs, rating.csat) if rating else None,
                    excluded=any(c.exclude_from_training for c in [*own, *on_answers]),
                    changed_at=max(stamps),
                )
            )
        if m.role in _CONTEXT_ROLES:
            history.append((m.role, m.text))
    return turns
