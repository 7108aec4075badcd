"""The reply service: how a customer's message is answered, one implementation of each step.

    check_text            refuse a message too long or blank before anything is stored
    store_customer_turn   store the customer's message (refused when the batcher is full and the
                          bot would answer); the caller ends that transaction before the model works
    guard                 what the customer may be sent: the generated reply, the intent's
                          approved answer, or a handoff (`bundle_runtime.guard`); `guard_unstored`
                          reads the approved answer in a transaction of its own
    store_reply           the guarded reply and the handoff check in one short transaction: the
                          write is conditional, so no bot reply ever follows a handoff
    answer                the three steps for a route that waits for the whole reply: the turn is
                          committed, the batcher awaited with no transaction open, the reply
                          stored in a second transaction

The plain widget route calls `answer`; the streaming route calls `store_customer_turn` and
`store_reply` around its token stream; the OpenAI-compatible route stores nothing and sends
what `guard_unstored` decides.

Errors: `NotAnswered` (the message was stored, no reply came: no model, or the batcher failed);
`ServiceUnavailable` 503 `overloaded` and `Unprocessable` 422 from the checks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from bundle_runtime.guard import GuardDecision, decide
from bundle_runtime.onnx_student import StudentReply
from chat_api.batching.loop import Batcher
from chat_api.batching.scheduler import BatchingError, DeadlineExceeded, Overloaded
from chat_api.errors import ServiceUnavailable, Unprocessable
from chat_api.metrics import ApiMetrics
from chat_api.routing import run_ending_transactions
from chat_api.runtime.serving import NoModelLoaded
from feedback import handoff
from feedback.db import session_scope
from feedback.handoff import HANDOFF_NOTICE as HANDOFF_NOTICE
from feedback.handoff import Change
from feedback.models import Message, MessageRole
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.settings import ApiSettings

NO_MODEL_DETAIL = (
    "No model is deployed, so the assistant cannot reply yet. Your message was saved. "
    "An operator deploys a model with `chatdistill deploy BUNDLE_DIR` "
    "(or `chatdistill quickstart` to build a demo one)."
)


@dataclass(frozen=True)
class CustomerTurn:
    message: Message  # the stored customer message
    handed_off: bool  # a human has the conversation: the bot does not answer
    turns: list[tuple[str, str]] = field(default_factory=list)  # what the model reads, if it will


@dataclass(frozen=True)
class Answer:
    message: Message  # the customer's
    reply: Message | None  # None when a human has the conversation
    handoff: bool


class NotAnswered(Exception):
    """The customer's message was stored (and committed) but no reply came."""

    def __init__(self, message: Message, code: str, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.message, self.code, self.detail, self.retry_after = message, code, detail, retry_after


def check_text(api: ApiSettings, text: str) -> None:
    if len(text) > api.max_message_chars:
        raise Unprocessable(
            f"the message has {len(text)} characters; the limit is "
            f"{api.max_message_chars}. Send a shorter message",
            code="message_too_long",
        )
    # Zero-width space, (non-)joiner, word joiner and BOM make a blank message look non-empty.
    visible = text.translate(dict.fromkeys((0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)))
    if not visible.strip():
        raise Unprocessable("the message is empty; type something", code="empty_message")


def check_capacity(batcher: Batcher) -> None:
    """Refuse before anything is stored when the batcher's queue is full (503, Retry-After):
    the client retries the same message without creating a duplicate."""
    try:
        batcher.check_capacity()
    except Overloaded as exc:
        raise ServiceUnavailable(
            str(exc),
            code="overloaded",
            headers={"Retry-After": str(exc.retry_after_s)},
            extra={"retry_after": exc.retry_after_s},
        ) from None


def batching_error_code(exc: BatchingError) -> str:
    """overloaded | reply_timeout | reply_failed"""
    if isinstance(exc, Overloaded):
        return "overloaded"
    return "reply_timeout" if isinstance(exc, DeadlineExceeded) else "reply_failed"


def store_customer_turn(
    session: Session, batcher: Batcher, conversation_id: uuid.UUID, text: str
) -> CustomerTurn:
    """Store the customer's message with what the model will read. The caller ends the
    transaction before the model works (`chat_api.routing.run_ending_transactions`)."""
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    handoff.customer_wrote(session, conversation)  # a resolved case: the bot answers again
    if not conversation.handed_off:
        check_capacity(batcher)
    message = repo.add_message(conversation, role=MessageRole.CUSTOMER, text=text)
    if conversation.handed_off:
        return CustomerTurn(message, handed_off=True)
    return CustomerTurn(message, handed_off=False, turns=model_turns(repo, conversation_id))


def model_turns(repo: ConversationRepository, conversation_id: uuid.UUID) -> list[tuple[str, str]]:
    """The model reads the stored (PII-redacted) texts, as training does."""
    return [
        (m.role, m.text)
        for m in repo.messages(conversation_id)
        if m.role in (MessageRole.CUSTOMER.value, MessageRole.ASSISTANT.value)
    ]


def guard(session: Session, reply: StudentReply, customer_text: str) -> GuardDecision:
    """What the reply sends (`bundle_runtime.guard`): the generated text, the predicted intent's
    approved answer in place of an unfit one, or a handoff. `customer_text`: the message answered,
    as the customer typed it (figures it states may be echoed)."""
    approved = None
    if reply.handoff_reason is None:  # a handoff needs no answer looked up
        approved = ApprovedAnswerRepository(session).text_for(reply.intent)
    return decide(reply, approved, customer_text)


def guard_unstored(
    factory: sessionmaker[Session],
    reply: StudentReply,
    customer_text: str,
    *,
    client_max_tokens: int | None = None,
) -> GuardDecision:
    """`guard` for a reply that is not stored (the OpenAI-compatible route): the approved answer
    is read in a short transaction of its own. A reply cut by the client's own `max_tokens` is
    what the client asked for, not a defect: the guard sees it as finished. Blocking: call it
    from a worker thread."""
    if client_max_tokens is not None and len(reply.tokens) >= client_max_tokens:
        reply = replace(reply, finish_reason="stop")
    with session_scope(factory) as session:
        return guard(session, reply, customer_text)


def store_reply(
    session: Session,
    conversation_id: uuid.UUID,
    version: str,
    reply: StudentReply,
    metrics: ApiMetrics,
    customer_text: str,
) -> Message | None:
    """Store the assistant's reply as the guard lets it out and hand the conversation off when
    the decision asks for it. None when the conversation went to a human (or was closed) before
    the reply could be stored: the check and the write are one conditional statement. Run it in
    its own short transaction."""
    sent = guard(session, reply, customer_text)
    repo = ConversationRepository(session)
    stored = repo.add_reply_unless_handed_off(
        conversation_id,
        text=sent.text,
        intent=reply.intent,
        intent_confidence=reply.confidence,
        reward_score=reply.reward,
        model_version=version,
        latency_ms=reply.latency_ms,
        handoff=sent.handoff_reason is not None,
        reply_source=sent.source,
        guard_reason=sent.reason,
    )
    if stored is None:
        return None
    metrics.reply_sources.labels(sent.source).inc()
    reason = sent.handoff_reason
    if reason is not None and hand_off(session, conversation_id, reason, by="system"):
        metrics.handoffs.labels(reason).inc()
    return stored


def hand_off(
    session: Session, conversation_id: uuid.UUID, reason: str, *, by: str = "customer"
) -> Change | None:
    """Put the conversation in the operators' queue and tell the customer (`feedback.handoff`);
    None (nothing posted) when a human already has it. `by`: customer or system (the bot)."""
    return handoff.request_human(session, conversation_id, reason=reason, actor_type=by)


async def answer(
    session: Session,
    batcher: Batcher,
    metrics: ApiMetrics,
    conversation_id: uuid.UUID,
    text: str,
) -> Answer:
    """Store the customer's turn, wait for the model, store the guarded reply. Raises
    `NotAnswered` (after the turn is committed) when no reply comes."""
    # Store work runs in the threadpool in two short steps, each ending its transaction in its
    # own thread (chat_api.routing); the wait for the model runs on the event loop and holds no
    # thread, so a crowd of customers waiting for replies never leaves an operator's request
    # queueing for a thread.
    turn = await run_in_threadpool(
        run_ending_transactions, [session], store_customer_turn, session, batcher,
        conversation_id, text,
    )  # fmt: skip
    metrics.customer_messages.inc()
    if turn.handed_off:  # a human has the conversation now: the bot does not talk over them
        return Answer(turn.message, reply=None, handoff=True)
    try:
        version, reply = await batcher.reply(turn.turns, route_key=str(conversation_id))
    except NoModelLoaded:
        raise NotAnswered(turn.message, "no_model_deployed", NO_MODEL_DETAIL, 60) from None
    except BatchingError as exc:
        detail = f"{exc}. Your message was saved; ask again in a moment."
        raise NotAnswered(turn.message, batching_error_code(exc), detail, 5) from None
    stored = await run_in_threadpool(
        run_ending_transactions, [session], store_reply, session, conversation_id, version,
        reply, metrics, text,
    )  # fmt: skip
    if stored is None:  # handed to a human while the model was thinking: no bot reply
        return Answer(turn.message, reply=None, handoff=True)
    return Answer(turn.message, reply=stored, handoff=stored.handoff)
