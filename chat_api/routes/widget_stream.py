"""The widget's streaming reply: `POST /v1/widget/conversations/{id}/messages/stream` (SSE).

Same auth, body and validation as the non-streaming endpoint, and the same reply service
(`chat_api.replies`): the customer message is stored by the request's unit of work (committed
before the stream starts), then the reply is generated in the batch, streamed token by token,
and stored as the guard lets it out in its own unit of work (`session_scope`) once generation
ends; the `reply` event carries what was stored. Events, in order:

    event: message   the stored customer message (MessageOut)
    event: token     {"text": "<delta>"}                      zero or more
    event: reply     {"reply": MessageOut | null, "handoff": bool}   after the reply is stored
    event: error     {"code": "...", "detail": "..."}         instead of `reply` on failure:
                     no_model_deployed, overloaded, reply_timeout, reply_failed, store_failed

A handed-off conversation gets `reply` with reply null and handoff true. A client that
disconnects aborts its request: the batch stops computing it, and nothing is stored for it.
A full queue is refused before anything is stored (503 with Retry-After, like the plain route).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from chat_api import live
from chat_api.batching.loop import Completed, TokenDelta
from chat_api.batching.scheduler import BatchingError
from chat_api.dependencies import DbSession, WidgetWrite
from chat_api.metrics import ApiMetrics
from chat_api.replies import (
    NO_MODEL_DETAIL,
    batching_error_code,
    check_text,
    store_customer_turn,
    store_reply,
)
from chat_api.routing import widget_router
from chat_api.runtime.serving import NoModelLoaded
from chat_api.schemas import MessageOut, PostMessage
from chat_api.state import AppState, app_state, settings_of
from feedback.db import session_scope

logger = logging.getLogger(__name__)

router = widget_router()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.post(
    "/conversations/{conversation_id}/messages/stream",
    response_class=StreamingResponse,
    summary="Post a customer message and stream the assistant's reply (server-sent events)",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: message, token*, then reply or error.",
        },
        503: {"description": "Overloaded: nothing was stored; retry after Retry-After."},
    },
)
def post_message_stream(
    request: Request, conversation_id: WidgetWrite, body: PostMessage, session: DbSession
) -> StreamingResponse:
    check_text(settings_of(request).api, body.text)
    state = app_state(request)
    turn = store_customer_turn(session, state["batcher"], conversation_id, body.text)
    state["metrics"].customer_messages.inc()
    stored = MessageOut.model_validate(turn.message).model_dump(mode="json")
    turns = None if turn.handed_off else turn.turns
    # Committed here, in the handler's thread, before the stream starts (the dependency's
    # teardown would wait for a free threadpool slot while holding the transaction).
    session.commit()
    live.announce_conversation(state, conversation_id)
    if turn.handed_off:
        live.announce_inbox(state)  # the inbox shows the customer's last message
    events = _events(
        state, conversation_id, stored, turns, body.text,
    )  # fmt: skip
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def _events(
    state: AppState,
    conversation_id: uuid.UUID,
    stored: dict[str, Any],
    turns: list[tuple[str, str]] | None,
    customer_text: str,
) -> AsyncIterator[str]:
    batcher, factory, metrics = state["batcher"], state["session_factory"], state["metrics"]
    yield sse("message", stored)
    if turns is None:  # handed off: a human has the conversation, the bot stays quiet
        yield sse("reply", {"reply": None, "handoff": True})
        return
    try:
        ticket = batcher.submit(turns, stream=True, route_key=str(conversation_id))
    except NoModelLoaded:
        yield sse("error", {"code": "no_model_deployed", "detail": NO_MODEL_DETAIL})
        return
    except BatchingError as exc:
        yield sse("error", {"code": batching_error_code(exc), "detail": str(exc)})
        return
    events = ticket.events()
    done: Completed | None = None
    try:
        async for event in events:
            if isinstance(event, TokenDelta):
                yield sse("token", {"text": event.text})
            else:
                done = event
    except BatchingError as exc:
        yield sse("error", {"code": batching_error_code(exc), "detail": str(exc)})
        return
    finally:
        await events.aclose()  # a disconnected client aborts its request here
    assert done is not None
    try:
        answer = await run_in_threadpool(
            _store, factory, metrics, conversation_id, done, customer_text
        )
    except Exception:
        logger.exception("storing the streamed reply of conversation %s failed", conversation_id)
        detail = "the reply could not be saved; send your message again"
        yield sse("error", {"code": "store_failed", "detail": detail})
        return
    if answer is None:  # handed to a human while the model was thinking: no bot reply
        yield sse("reply", {"reply": None, "handoff": True})
        return
    live.announce_conversation(state, conversation_id)  # committed: operators watching see it
    if answer["handoff"]:
        live.became_waiting(state, conversation_id)
    yield sse("reply", {"reply": answer, "handoff": answer["handoff"]})


def _store(
    factory: sessionmaker[Session],
    metrics: ApiMetrics,
    conversation_id: uuid.UUID,
    done: Completed,
    customer_text: str,
) -> dict[str, Any] | None:
    with session_scope(factory) as session:
        answer = store_reply(
            session, conversation_id, done.version, done.reply, metrics, customer_text
        )
        if answer is None:
            return None
        out: dict[str, Any] = MessageOut.model_validate(answer).model_dump(mode="json")
    return out
