"""The operators' inbox: conversations handed to a human, by view, and the queue's counts.

waiting   in the queue, oldest handoff first
mine      with the given operator (state agent), oldest handoff first
all       waiting or with any operator, oldest handoff first
resolved  resolved, most recently changed first
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedback.models import Conversation, ConversationState, Message, MessageRole, Operator

InboxView = Literal["waiting", "mine", "all", "resolved"]

WAITING, AGENT, RESOLVED = (
    ConversationState.WAITING.value,
    ConversationState.AGENT.value,
    ConversationState.RESOLVED.value,
)


@dataclass(frozen=True)
class InboxRow:
    conversation: Conversation
    assigned_operator_email: str | None
    last_customer_text: str | None


@dataclass(frozen=True)
class InboxCounts:
    waiting: int
    mine: int


class InboxRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def counts(self, operator_id: uuid.UUID) -> InboxCounts:
        c = Conversation
        waiting = func.count().filter(c.state == WAITING)
        mine = func.count().filter(c.state == AGENT, c.assigned_operator_id == operator_id)
        row = self.session.execute(select(waiting, mine).where(c.state.in_((WAITING, AGENT)))).one()
        return InboxCounts(waiting=int(row[0]), mine=int(row[1]))

    def list(self, view: InboxView, operator_id: uuid.UUID, *, limit: int = 50) -> list[InboxRow]:
        c = Conversation
        last_text = (
            select(Message.text)
            .where(Message.conversation_id == c.id, Message.role == MessageRole.CUSTOMER.value)
            .order_by(Message.seq.desc())
            .limit(1)
            .correlate(c)
            .scalar_subquery()
        )
        stmt = select(c, Operator.email, last_text).outerjoin(
            Operator, Operator.id == c.assigned_operator_id
        )
        oldest_first = (c.handed_off_at.asc().nulls_last(), c.id)
        if view == "waiting":
            stmt = stmt.where(c.state == WAITING).order_by(*oldest_first)
        elif view == "mine":
            stmt = stmt.where(c.state == AGENT, c.assigned_operator_id == operator_id)
            stmt = stmt.order_by(*oldest_first)
        elif view == "all":
            stmt = stmt.where(c.state.in_((WAITING, AGENT))).order_by(*oldest_first)
        else:
            stmt = stmt.where(c.state == RESOLVED)
            stmt = stmt.order_by(c.state_changed_at.desc().nulls_last(), c.id)
        rows = self.session.execute(stmt.limit(limit)).all()
        return [InboxRow(row[0], row[1], row[2]) for row in rows]


def waiting_seconds(conversation: Conversation, now: dt.datetime) -> float | None:
    """Seconds the conversation has been in the queue; None unless it is waiting."""
    if conversation.state != WAITING or conversation.handed_off_at is None:
        return None
    return max(0.0, (now - conversation.handed_off_at).total_seconds())
