"""Request and response bodies of the public API (they make up the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_api.input_types import Score, Text
from feedback.models import OperatorRole
from feedback.monitor import WindowMetrics


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong and what to do about it.")


class ErrorBody(BaseModel):
    error: ErrorDetail


# --- widget -------------------------------------------------------------------------------------


class StartConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: Text | None = Field(default=None, max_length=200, description="Page or site name.")
    locale: Text | None = Field(default=None, max_length=35, description="BCP 47 language tag.")


class ConversationStarted(BaseModel):
    conversation_id: uuid.UUID
    token: str = Field(description="Bearer token for this conversation only; keep it secret.")
    expires_at: dt.datetime


class PostMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text = Field(min_length=1, description="The customer's message.")


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    seq: int
    created_at: dt.datetime
    role: str
    text: str
    intent: str | None = None
    intent_confidence: float | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    handoff: bool = False
    # Assistant replies: generated (the model's text), approved (the intent's approved answer
    # stood in for an unfit reply) or handoff.
    reply_source: str | None = None
    # Agent messages: the operator who wrote it.
    operator_id: uuid.UUID | None = None


class SetApprovedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text | None = Field(
        default=None, min_length=1, max_length=2000, description="The answer's text."
    )
    message_id: uuid.UUID | None = Field(
        default=None,
        description="Take the text of this assistant reply (its newest correction if it has "
        "one) when `text` is not given.",
    )


class ApprovedAnswerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    intent: str
    text: str
    source: Literal["operator", "seed"]
    message_id: uuid.UUID | None
    operator_id: uuid.UUID | None
    model_version: str | None
    updated_at: dt.datetime


class RatingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID | None
    thumbs: Literal["up", "down"] | None
    csat: int | None
    comment: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ConversationOut(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    status: str
    state: Literal["bot", "waiting", "agent", "resolved"] = Field(
        description="Who answers: bot, waiting (for an operator), agent (an operator has "
        "it), resolved."
    )
    handed_off: bool
    handed_off_at: dt.datetime | None
    messages: list[MessageOut]
    ratings: list[RatingOut]


class RateReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thumbs: Literal["up", "down"] | None = Field(default=None, description="Thumbs up or down.")
    csat: Score | None = Field(default=None, ge=1, le=5, description="Satisfaction 1 (bad) - 5.")
    comment: Text | None = Field(default=None, description="Optional free text.")


class GiveCsat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: Score = Field(ge=1, le=5, description="Satisfaction with the whole conversation, 1-5.")
    comment: Text | None = None


class AskForHuman(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = Field(default=None, max_length=200)


class HandoffOut(BaseModel):
    conversation_id: uuid.UUID
    handed_off: bool
    handed_off_at: dt.datetime | None
    message: MessageOut | None = Field(description="The notice added to the conversation.")


class PostMessageOut(BaseModel):
    message: MessageOut = Field(description="The stored customer message.")
    reply: MessageOut | None = Field(
        description="The assistant's reply, stored with its model data; null once the "
        "conversation is with a human (the bot stays quiet after a handoff)."
    )
    handoff: bool = Field(
        description="The conversation is with a human: the model asked for one (low "
        "confidence or off-topic) or the customer did."
    )


class NoModelBody(BaseModel):
    error: ErrorDetail
    message_id: uuid.UUID = Field(description="The stored customer message.")


# --- operator -----------------------------------------------------------------------------------


class InboxItem(BaseModel):
    conversation_id: uuid.UUID
    state: Literal["bot", "waiting", "agent", "resolved"]
    handoff_reason: str | None = Field(
        description="Why it was handed off: customer_request, low_confidence, out_of_scope, ..."
    )
    waiting_since: dt.datetime | None = Field(description="When it entered the queue.")
    waiting_seconds: float | None = Field(
        description="Seconds in the queue so far (waiting conversations; null otherwise)."
    )
    assigned_operator_id: uuid.UUID | None
    assigned_operator_email: str | None
    last_customer_text: str | None
    message_count: int
    updated_at: dt.datetime


class InboxOut(BaseModel):
    waiting_count: int = Field(description="Conversations waiting for an operator.")
    mine_count: int = Field(description="Conversations the caller has (state agent).")
    items: list[InboxItem]


class AgentMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text = Field(min_length=1, description="The operator's reply to the customer.")


class AssignConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator_id: uuid.UUID = Field(description="The operator who gets the conversation.")


class HandoffStateOut(BaseModel):
    conversation_id: uuid.UUID
    state: Literal["bot", "waiting", "agent", "resolved"]
    assigned_operator_id: uuid.UUID | None
    message: MessageOut | None = Field(description="The notice the customer sees, if any.")


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Text = Field(max_length=320)
    password: Text = Field(max_length=1024)


class OperatorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    name: str
    role: OperatorRole
    active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class LoginOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_at: dt.datetime
    operator: OperatorOut


class ConversationSummary(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    updated_at: dt.datetime
    status: str
    handed_off: bool
    message_count: int
    last_message: str | None
    intents: list[str]
    model_versions: list[str]


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int


class CorrectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    message_id: uuid.UUID
    operator_id: uuid.UUID | None
    corrected_text: str | None
    corrected_intent: str | None
    exclude_from_training: bool
    note: str | None
    created_at: dt.datetime


class OperatorConversationOut(ConversationOut):
    site: str | None
    locale: str | None
    handoff_reason: str | None
    assigned_operator_id: uuid.UUID | None = None
    corrections: list[CorrectionOut]


class CorrectReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    corrected_text: Text | None = Field(default=None, min_length=1, max_length=10_000)
    corrected_intent: Text | None = Field(default=None, min_length=1, max_length=120)
    exclude_from_training: bool = Field(
        default=False, description="Keep this message out of training data (e.g. abusive)."
    )
    note: Text | None = Field(default=None, max_length=2000)


class LabelIntent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    intent: Text = Field(min_length=1, max_length=120)
    note: Text | None = Field(default=None, max_length=2000)


class MetricsSummary(WindowMetrics):
    production_model: str | None = Field(description="The version the production alias serves.")


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    bundle_uri: str
    checksum: str
    metrics: dict[str, Any]
    created_at: dt.datetime
    aliases: list[str]


# --- operator: metrics over time, promotions, runs ----------------------------------------------


class MetricsPoint(BaseModel):
    start: dt.datetime
    end: dt.datetime
    conversations: int
    assistant_replies: int
    thumbs_up: int
    thumbs_down: int
    positive_rate: float | None
    verified_intents: int
    intent_accuracy: float | None
    handoff_rate: float | None
    latency_p95_ms: float | None
    fallback_rate: float | None = None  # replies the serving guard replaced
    handed_off: int = 0  # conversations started in the bucket that were ever handed off
    # Conversations whose first agent reply came in the bucket; the wait since the handoff.
    first_agent_replies: int = 0
    first_agent_reply_p50_s: float | None = None
    first_agent_reply_p95_s: float | None = None


class Thresholds(BaseModel):
    min_positive_rate: float
    min_intent_accuracy: float
    max_handoff_rate: float
    max_latency_p95_ms: float
    max_fallback_rate: float


class AliasEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    alias: str
    model_version_id: str
    previous_version_id: str | None
    reason: str | None
    at: dt.datetime


class MetricsSeries(BaseModel):
    since: dt.datetime
    until: dt.datetime
    bucket_seconds: int
    model_version: str | None
    points: list[MetricsPoint]
    thresholds: Thresholds
    promotions: list[AliasEventOut] = Field(description="Production alias moves in the range.")


class PromoteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=500, description="Why; kept in the audit log.")


class PromotionOut(BaseModel):
    alias: str
    model_version_id: str
    previous_version_id: str | None
    serving: str | None = Field(description="The version this API process serves now.")


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    trigger: str
    trigger_detail: dict[str, Any]
    status: str
    stage: str | None
    progress: float
    metrics: dict[str, Any]
    error: str | None
    candidate_version_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    steps: dict[str, Any] = Field(
        default_factory=dict, description="Checkpointed steps (snapshot, train, evaluate, ...)."
    )
    attempts: int = Field(default=0, description="Times a worker claimed the run.")
    heartbeat_at: dt.datetime | None = Field(
        default=None, description="When the executing worker last marked the run alive."
    )
    cancel_requested: bool = False


class TriggerRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=1, max_length=500, description="Why; kept in the audit log.")
    kind: Literal["incremental", "compression"] = Field(
        default="incremental",
        description="incremental: distil from fresh feedback; compression: a smaller, faster "
        "student (INT8), gated on accuracy.",
    )


# --- admin --------------------------------------------------------------------------------------


class CreateOperator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Text = Field(max_length=320)
    name: Text = Field(min_length=1, max_length=200)
    password: Text = Field(max_length=1024)
    role: OperatorRole = OperatorRole.OPERATOR


class UpdateOperator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    role: OperatorRole | None = None


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=100)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. Shown once; store it now.")


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: dt.datetime
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]


# --- OpenAI-compatible ---------------------------------------------------------------------------


class ChatMessageIn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: Text = Field(max_length=100_000)


class ChatCompletionRequest(BaseModel):
    model: Text | None = Field(
        default=None, max_length=120, description="Model version id; default production."
    )
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=100)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    temperature: float | None = Field(default=None, ge=0, le=2)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatdistill"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = Field(description="The model version that answered.")
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage
