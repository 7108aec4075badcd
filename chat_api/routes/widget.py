"""Public widget endpoints. Every call but the first carries the conversation's token.

A customer message is stored, then answered by the deployed student through the batcher (the
request's worker thread waits for it); a reply with low confidence or an out-of-scope intent
hands the conversation to a human. `widget_stream` streams the same reply over SSE.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from bundle_runtime.guard import guard_reply, unfit_reason
from bundle_runtime.onnx_student import StudentReply
from chat_api.batching.loop import Batcher
from chat_api.batching.scheduler import BatchingError, DeadlineExceeded, Overloaded
from chat_api.dependencies import (
    DbSession,
    WidgetConversation,
    WidgetWrite,
    conversation_start_limit,
    per_ip_limit,
)
from chat_api.errors import (
    ConflictError,
    NotFoundError,
    ServiceUnavailable,
    Unprocessable,
    error_body,
)
from chat_api.metrics import ApiMetrics
from chat_api.routing import TransactionEndingRoute, run_ending_transactions
from chat_api.runtime.serving import NoModelLoaded
from chat_api.schemas import (
    AskForHuman,
    ConversationOut,
    ConversationStarted,
    ErrorBody,
    GiveCsat,
    HandoffOut,
    MessageOut,
    NoModelBody,
    PostMessage,
    PostMessageOut,
    RateReply,
    RatingOut,
    StartConversation,
)
from chat_api.state import app_state, settings_of
from chat_api.views import conversation_out, rating_out
from feedback.models import Message, MessageRole
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import RatingRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or expired widget token."},
    403: {"model": ErrorBody, "description": "The token belongs to another conversation."},
    404: {"model": ErrorBody, "description": "No such conversation or message."},
    413: {"model": ErrorBody, "description": "Request body too large."},
    422: {"model": ErrorBody, "description": "Invalid input."},
    429: {"model": ErrorBody, "description": "Rate limited; see Retry-After."},
}

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/widget",
    tags=["widget"],
    dependencies=[Depends(per_ip_limit)],
    responses=_ERRORS,
)

HANDOFF_NOTICE = "A human agent has been asked to join this conversation. Please stay here."


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(conversation_start_limit)],
    summary="Start a conversation",
)
def start_conversation(
    request: Request, session: DbSession, body: StartConversation | None = None
) -> ConversationStarted:
    body = body or StartConversation()
    conversation = ConversationRepository(session).create(site=body.site, locale=body.locale)
    token, expires_at = app_state(request)["signer"].issue(conversation.id)
    return ConversationStarted(conversation_id=conversation.id, token=token, expires_at=expires_at)


@router.get("/conversations/{conversation_id}", summary="Read the conversation")
def read_conversation(conversation_id: WidgetConversation, session: DbSession) -> ConversationOut:
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    ratings = RatingRepository(session).for_conversation(conversation_id)
    return conversation_out(conversation, repo.messages(conversation_id), ratings)


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PostMessageOut,
    summary="Post a customer message and get the assistant's reply",
    responses={
        503: {
            "model": NoModelBody,
            "description": "No model is deployed: the message is stored, no reply is produced.",
        }
    },
)
async def post_message(
    request: Request, conversation_id: WidgetWrite, body: PostMessage, session: DbSession
) -> PostMessageOut | JSONResponse:
    check_text(request, body)
    state = app_state(request)
    repo = ConversationRepository(session)
    batcher = state["batcher"]

    def store_turn() -> tuple[Message, bool, list[tuple[str, str]]]:
        conversation = repo.get(conversation_id)
        if not conversation.handed_off:
            check_capacity(batcher)
        message = repo.add_message(conversation, role=MessageRole.CUSTOMER, text=body.text)
        return message, conversation.handed_off, model_turns(repo, conversation_id)

    # Store work runs in the threadpool in two short steps, each ending its transaction in its
    # own thread (chat_api.routing); the wait for the model runs on the event loop and holds no
    # thread, so a crowd of customers waiting for replies never leaves an operator's request
    # queueing for a thread.
    message, handed_off, turns = await run_in_threadpool(
        run_ending_transactions, [session], store_turn
    )
    state["metrics"].customer_messages.inc()
    if handed_off:
        # A human has the conversation now: the bot does not talk over them.
        return PostMessageOut(message=MessageOut.model_validate(message), reply=None, handoff=True)
    try:
        version, reply = await batcher.reply(turns, route_key=str(conversation_id))
    except NoModelLoaded:
        return _no_model(message)
    except BatchingError as exc:
        detail = f"{exc}. Your message was saved; ask again in a moment."
        return _unanswered(message, batching_error_code(exc), detail)

    answer = await run_in_threadpool(
        run_ending_transactions,
        [session],
        store_reply,
        repo,
        conversation_id,
        version,
        reply,
        state["metrics"],
        body.text,
    )
    if answer is None:  # handed to a human while the model was thinking: no bot reply
        return PostMessageOut(message=MessageOut.model_validate(message), reply=None, handoff=True)
    return PostMessageOut(
        message=MessageOut.model_validate(message),
        reply=MessageOut.model_validate(answer),
        handoff=answer.handoff,
    )


def check_text(request: Request, body: PostMessage) -> None:
    settings = settings_of(request)
    if len(body.text) > settings.api.max_message_chars:
        raise Unprocessable(
            f"the message has {len(body.text)} characters; the limit is "
            f"{settings.api.max_message_chars}. Send a shorter message",
            code="message_too_long",
        )
    # Zero-width space, (non-)joiner, word joiner and BOM make a blank message look non-empty.
    visible = body.text.translate(dict.fromkeys((0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)))
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


def model_turns(repo: ConversationRepository, conversation_id: uuid.UUID) -> list[tuple[str, str]]:
    """The model reads the stored (PII-redacted) texts, as training does."""
    return [
        (m.role, m.text)
        for m in repo.messages(conversation_id)
        if m.role in (MessageRole.CUSTOMER.value, MessageRole.ASSISTANT.value)
    ]


def store_reply(
    repo: ConversationRepository,
    conversation_id: uuid.UUID,
    version: str,
    reply: StudentReply,
    metrics: ApiMetrics,
    customer_text: str = "",
) -> Message | None:
    """Store the assistant's reply as the serving guard lets it out (`bundle_runtime.guard`):
    the generated text, the intent's approved answer, or a handoff; hand the conversation off
    when the reply asks for it. None when the conversation went to a human (or was closed)
    before the reply could be stored: the check and the write are one conditional statement,
    so no bot reply ever follows a handoff. Run it in its own short transaction.
    `customer_text`: the message answered (figures it states may be echoed in the reply)."""
    unfit = approved = None
    if reply.handoff_reason is None:
        approved = ApprovedAnswerRepository(repo.session).text_for(reply.intent)
        unfit = unfit_reason(
            reply.text,
            reply.finish_reason,
            reply.reward,
            reply.guard_min_reward,
            approved=approved,
            customer_text=customer_text,
        )
    sent = guard_reply(
        text=reply.text, handoff_reason=reply.handoff_reason, unfit=unfit, approved=approved
    )
    answer = repo.add_reply_unless_handed_off(
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
    if answer is None:
        return None
    metrics.reply_sources.labels(sent.source).inc()
    if sent.handoff_reason is not None:
        conversation = repo.get(conversation_id)
        repo.session.refresh(conversation)  # current under the row lock the reply took
        if repo.hand_off(conversation, reason=sent.handoff_reason):
            repo.add_message(
                conversation, role=MessageRole.SYSTEM, text=HANDOFF_NOTICE, handoff=True
            )
            metrics.handoffs.labels(sent.handoff_reason).inc()
    return answer


NO_MODEL_DETAIL = (
    "No model is deployed, so the assistant cannot reply yet. Your message was saved. "
    "An operator deploys a model with `chatdistill deploy BUNDLE_DIR` "
    "(or `chatdistill quickstart` to build a demo one)."
)


def _no_model(message: Message) -> JSONResponse:
    # No reply engine is deployed on this server. The message is kept (this response commits
    # normally: it is returned, not raised) and the client learns why no reply comes.
    return _unanswered(message, "no_model_deployed", NO_MODEL_DETAIL, retry_after=60)


def _unanswered(message: Message, code: str, detail: str, retry_after: int = 5) -> JSONResponse:
    """503 for a message that was stored but got no reply; returned, so the message commits."""
    payload = error_body(code, detail)
    payload["message_id"] = str(message.id)
    payload["message"] = MessageOut.model_validate(message).model_dump(mode="json")
    return JSONResponse(payload, status_code=503, headers={"Retry-After": str(retry_after)})


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/rating",
    summary="Rate an assistant reply (thumbs and/or CSAT); a new rating replaces the old",
)
def rate_reply(
    request: Request,
    conversation_id: WidgetWrite,
    message_id: uuid.UUID,
    body: RateReply,
    session: DbSession,
) -> RatingOut:
    if body.thumbs is None and body.csat is None:
        raise Unprocessable("give `thumbs` (up/down) and/or `csat` (1-5)", code="empty_rating")
    _check_comment(request, body.comment)
    repo = ConversationRepository(session)
    message = repo.get_message(message_id)
    if message.conversation_id != conversation_id:
        raise NotFoundError(f"message {message_id} is not in this conversation")
    thumbs = {"up": 1, "down": -1}[body.thumbs] if body.thumbs else None
    rating = RatingRepository(session).rate_message(
        message, thumbs=thumbs, csat=body.csat, comment=body.comment
    )
    metrics = app_state(request)["metrics"]
    if body.thumbs:
        metrics.ratings.labels(f"thumbs_{body.thumbs}").inc()
    if body.csat:
        metrics.ratings.labels("csat").inc()
    return rating_out(rating)


@router.post("/conversations/{conversation_id}/csat", summary="Give CSAT for the conversation")
def give_csat(
    request: Request, conversation_id: WidgetWrite, body: GiveCsat, session: DbSession
) -> RatingOut:
    _check_comment(request, body.comment)
    conversation = ConversationRepository(session).get(conversation_id)
    rating = RatingRepository(session).rate_conversation(
        conversation, csat=body.score, comment=body.comment
    )
    app_state(request)["metrics"].ratings.labels("csat").inc()
    return rating_out(rating)


@router.post("/conversations/{conversation_id}/handoff", summary="Ask for a human")
def ask_for_human(
    request: Request,
    conversation_id: WidgetWrite,
    session: DbSession,
    body: AskForHuman | None = None,
) -> HandoffOut:
    repo = ConversationRepository(session)
    conversation = repo.get(conversation_id)
    reason = (body.reason if body and body.reason else None) or "customer_request"
    notice = None
    if repo.hand_off(conversation, reason=reason):
        notice = repo.add_message(
            conversation, role=MessageRole.SYSTEM, text=HANDOFF_NOTICE, handoff=True
        )
        app_state(request)["metrics"].handoffs.labels("customer_request").inc()
    elif conversation.status == "closed":
        raise ConflictError("this conversation is closed; start a new one")
    return HandoffOut(
        conversation_id=conversation.id,
        handed_off=conversation.handed_off,
        handed_off_at=conversation.handed_off_at,
        message=MessageOut.model_validate(notice) if notice else None,
    )


def _check_comment(request: Request, comment: str | None) -> None:
    limit = settings_of(request).api.max_comment_chars
    if comment is not None and len(comment) > limit:
        raise Unprocessable(
            f"the comment has {len(comment)} characters; the limit is {limit}",
            code="comment_too_long",
        )
