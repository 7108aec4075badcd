"""OpenAI-compatible API for existing server-to-server clients (API key auth).

`/v1/models` lists the registered student versions. `/v1/chat/completions` answers with the
deployed student (greedy: `temperature` is ignored; `max_tokens` caps the reply), or 503 without
one. `user` turns are the customer's, `assistant` turns the assistant's; `system` turns are not
read. Nothing is stored. Replies pass the widget's guard (`chat_api.replies.guard_unstored`): an
unfit reply is replaced by its intent's approved answer (finish_reason "stop"); a cut the
client's own `max_tokens` asked for is not unfit. `stream: true` answers in OpenAI's chunk format
over SSE, the deltas held until the guard has seen the whole reply; a failure after the stream
started is sent as `data: {"error": {...}}`. A full queue answers 503 (Retry-After).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from chat_api.batching.loop import Completed, Ticket, TokenDelta
from chat_api.batching.scheduler import BatchingError, Overloaded
from chat_api.dependencies import CurrentApiKey, DbSession
from chat_api.errors import error_response
from chat_api.replies import batching_error_code, guard_unstored
from chat_api.routing import TransactionEndingRoute
from chat_api.runtime.serving import NoModelLoaded
from chat_api.schemas import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionUsage,
    ErrorBody,
    ModelCard,
    ModelList,
)
from chat_api.state import app_state
from feedback.repositories.model_versions import ModelVersionRepository

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or revoked API key."},
    422: {"model": ErrorBody, "description": "Invalid request."},
    429: {"model": ErrorBody, "description": "Over the API key's rate limit (Retry-After)."},
}

router = APIRouter(
    route_class=TransactionEndingRoute, prefix="/v1", tags=["openai-compatible"], responses=_ERRORS
)


@router.get("/models", summary="Registered student versions")
def list_models(_key: CurrentApiKey, session: DbSession) -> ModelList:
    versions = ModelVersionRepository(session).list()
    return ModelList(
        data=[ModelCard(id=v.id, created=int(v.created_at.timestamp())) for v in versions]
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="Chat completion from the deployed student",
    responses={
        404: {"model": ErrorBody, "description": "`model` names a model not served here."},
        503: {"model": ErrorBody, "description": "No model is deployed."},
    },
)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, _key: CurrentApiKey
) -> ChatCompletion | JSONResponse | StreamingResponse:
    if not any(m.role == "user" for m in body.messages):
        return error_response(422, "validation_error", "messages need at least one user turn")
    state = app_state(request)
    loaded = state["engine"].current
    if loaded is None:
        return _no_model()
    if body.model is not None and body.model != loaded.version_id:
        return error_response(
            404,
            "model_not_found",
            f"model {body.model!r} is not served here; this server serves "
            f"{loaded.version_id!r}. Omit `model` or send that id",
        )
    roles = {"user": "customer", "assistant": "assistant"}
    turns = [(roles[m.role], m.content) for m in body.messages if m.role in roles]
    try:
        ticket = state["batcher"].submit(turns, max_new_tokens=body.max_tokens, stream=body.stream)
    except NoModelLoaded:
        return _no_model()
    except Overloaded as exc:
        return error_response(
            503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        )
    customer_text = next(m.content for m in reversed(body.messages) if m.role == "user")
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    factory = state["session_factory"]
    if body.stream:
        chunks = _chunks(ticket, factory, customer_text, body.max_tokens, completion_id, created)
        return StreamingResponse(chunks, media_type="text/event-stream")
    try:
        done = await ticket.result()
    except BatchingError as exc:
        return error_response(503, batching_error_code(exc), f"{exc}; retry the request")
    reply = done.reply
    sent = await run_in_threadpool(
        guard_unstored, factory, reply, customer_text, client_max_tokens=body.max_tokens
    )
    approved = sent.source == "approved"
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=done.version,
        choices=[
            ChatCompletionChoice(
                index=0,
                message=ChatCompletionMessage(content=sent.text),
                finish_reason="stop" if approved else reply.finish_reason,
            )
        ],
        usage=ChatCompletionUsage(
            prompt_tokens=reply.source_tokens,
            completion_tokens=len(reply.tokens),
            total_tokens=reply.source_tokens + len(reply.tokens),
        ),
    )


def _no_model() -> JSONResponse:
    return error_response(
        503,
        "no_model_deployed",
        "No model is deployed on this server. Deploy one with `chatdistill deploy BUNDLE_DIR`.",
        headers={"Retry-After": "60"},
    )


async def _chunks(
    ticket: Ticket,
    factory: sessionmaker[Session],
    customer_text: str,
    max_tokens: int | None,
    completion_id: str,
    created: int,
) -> AsyncIterator[str]:
    """OpenAI `chat.completion.chunk` events: the role, content deltas, the finish reason. The
    deltas are held until the guard has seen the whole reply: a sent delta cannot be taken back."""

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ticket.version,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    def error(code: str, message: str) -> str:
        return f"data: {json.dumps({'error': {'code': code, 'message': message}})}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    deltas: list[str] = []
    done: Completed | None = None
    events = ticket.events()
    try:
        async for event in events:
            if isinstance(event, TokenDelta):
                deltas.append(event.text)
            else:
                done = event
    except BatchingError as exc:
        yield error(batching_error_code(exc), f"{exc}; retry")
    finally:
        await events.aclose()
    if done is not None:
        try:
            sent = await run_in_threadpool(
                guard_unstored, factory, done.reply, customer_text, client_max_tokens=max_tokens
            )
        except Exception:
            logger.exception("the guard could not check completion %s", completion_id)
            yield error("reply_failed", "the reply could not be checked; retry")
        else:
            if sent.source == "approved":
                yield chunk({"content": sent.text})
                yield chunk({}, "stop")
            else:
                for text in deltas:
                    yield chunk({"content": text})
                yield chunk({}, done.reply.finish_reason)
    yield "data: [DONE]\n\n"
