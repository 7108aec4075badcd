"""Conversations, their messages, and who has each conversation (the handoff states).

Customer text is stored only after PII redaction (see `feedback.redaction`); the repository
enforces it, the columns hold what is safe to keep.

Who answers a conversation (`state`, changed only through `feedback.handoff`):

    bot ──handoff──> waiting ──claim──> agent ──resolve──> resolved
     ^                  │                 │                   │
     └──── hand back ───┴─────────────────┘   customer writes ┘ (the bot answers again)

`handed_off` is True exactly while the state is waiting or agent: the bot does not answer then.
Every change is a `ConversationStateChange` row (who, when, from, to, why).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from feedback.models.base import Base, UTCDateTime, utcnow


class MessageRole(enum.StrEnum):
    CUSTOMER = "customer"
    ASSISTANT = "assistant"
    AGENT = "agent"  # a human operator answering in the conversation
    SYSTEM = "system"


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ConversationState(enum.StrEnum):
    BOT = "bot"  # the student answers
    WAITING = "waiting"  # handed off, in the operators' queue
    AGENT = "agent"  # an operator has it
    RESOLVED = "resolved"  # an operator closed the case; a new customer message goes to the bot


HUMAN_STATES = (ConversationState.WAITING.value, ConversationState.AGENT.value)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("state IN ('bot', 'waiting', 'agent', 'resolved')", name="state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.OPEN.value)
    site: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str | None] = mapped_column(String(35))
    handed_off: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    handed_off_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    handoff_reason: Mapped[str | None] = mapped_column(String(200))
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default=ConversationState.BOT.value, index=True)
    state_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    assigned_operator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL"), index=True
    )
    first_agent_reply_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.seq", cascade="all, delete-orphan"
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        CheckConstraint("role IN ('customer', 'assistant', 'agent', 'system')", name="role"),
        CheckConstraint(
            "intent_confidence IS NULL OR (intent_confidence >= 0 AND intent_confidence <= 1)",
            name="intent_confidence_range",
        ),
        CheckConstraint("latency_ms IS NULL OR latency_ms >= 0", name="latency_nonnegative"),
        CheckConstraint(
            "reply_source IS NULL OR reply_source IN ('generated', 'approved', 'handoff')",
            name="reply_source",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(120), index=True)
    intent_confidence: Mapped[float | None] = mapped_column(Float)
    reward_score: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(120), index=True)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    handoff: Mapped[bool] = mapped_column(Boolean, default=False)
    # Assistant replies: what the customer got (`bundle_runtime.guard`): the generated text,
    # the intent's approved answer, or a handoff; and why the generated text was not sent.
    reply_source: Mapped[str | None] = mapped_column(String(16), index=True)
    guard_reason: Mapped[str | None] = mapped_column(String(40))
    # Agent messages: the operator who wrote it.
    operator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL")
    )

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class ConversationStateChange(Base):
    """One change of who has a conversation (`Conversation.state`)."""

    __tablename__ = "conversation_state_changes"
    __table_args__ = (
        CheckConstraint("from_state IN ('bot', 'waiting', 'agent', 'resolved')", name="from_state"),
        CheckConstraint("to_state IN ('bot', 'waiting', 'agent', 'resolved')", name="to_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor_type: Mapped[str] = mapped_column(String(16))  # feedback.models.ActorType, or customer
    actor_id: Mapped[str | None] = mapped_column(String(64))
    assigned_operator_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("operators.id", ondelete="SET NULL")
    )
