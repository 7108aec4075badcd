"""The live event streams (server-sent events) of a conversation and of the operators' inbox.

A conversation's stream, the same for the widget and the operator:

    event: state     {"state": "bot|waiting|agent|resolved", "handed_off": bool}
                     at connect and whenever it changes
    event: message   id: <seq>, data: MessageOut (every role), each message once, in order
    event: typing    {"role": "agent" | "customer"}   someone else is typing (best effort)
    : keepalive      every `live.keepalive_s` with nothing else to send

The inbox's stream: `event: inbox` {"waiting_count": n, "mine_count": m} at connect and whenever
the queue changes (the client refetches its list), and the keepalive.

How: the stream registers with the bus (`chat_api.live`) before its first read, then loops:
read what is after its cursor in a short transaction in the threadpool (none held while it
waits), send it, wait for a wake-up or the poll timeout. A reconnecting client sends its last
`seq` (`Last-Event-ID`, or `?after=`) and gets exactly what it missed. The stream ends when the
client disconnects (the server cancels it, or the next check of the connection sees it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from chat_api.live import INBOX, Listener, conversation_topic
from chat_api.schemas import MessageOut
from chat_api.state import app_state
from feedback.db import session_scope
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.inbox import InboxRepository

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# What a conversation's events route documents, and its resume parameters.
CONVERSATION_EVENTS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Events: state, message (id: seq), typing; a keepalive comment.",
    }
}
ResumeAfter = Annotated[
    int | None, Query(ge=0, le=2**31, description="Resume after this message seq.")
]
LastEventId = Annotated[str | None, Header(max_length=20)]


def conversation_stream_response(
    request: Request,
    session: Session,
    conversation_id: uuid.UUID,
    *,
    after: int | None,
    last_event_id: str | None,
    typing_of: str,
) -> StreamingResponse:
    """The events stream of a conversation that exists (404 before the stream starts); the
    request's read transaction ends first, the stream holds none."""
    ConversationRepository(session).get(conversation_id)
    session.commit()
    cursor = resume_cursor(last_event_id, after)
    events = conversation_events(request, conversation_id, cursor, typing_of=typing_of)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


KEEPALIVE = ": keepalive\n\n"
DISCONNECT_CHECK_S = 1.0  # a client that left is noticed within this, not at the next write


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def resume_cursor(last_event_id: str | None, after: int | None) -> int:
    """Where a stream starts: the `Last-Event-ID` header wins over `?after=`; default 0."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after if after is not None and after > 0 else 0


async def _wait(
    request: Request, listener: Listener, timeout_s: float
) -> tuple[bool, list[dict[str, Any]]] | None:
    """A wake-up (woken, typing events), nothing within `timeout_s` ((False, [])), or None: the
    client disconnected."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        woken, typing = await listener.wait(max(0.0, min(DISCONNECT_CHECK_S, left)))
        if woken or typing:
            return woken, typing
        if await request.is_disconnected():
            return None
        if left <= DISCONNECT_CHECK_S:
            return False, []


@dataclass(frozen=True)
class _Read:
    state: dict[str, Any]
    messages: list[dict[str, Any]]


def _read_conversation(
    factory: sessionmaker[Session], conversation_id: uuid.UUID, after_seq: int
) -> _Read:
    with session_scope(factory) as session:
        repo = ConversationRepository(session)
        conversation = repo.get(conversation_id)
        state = {"state": conversation.state, "handed_off": conversation.handed_off}
        rows = repo.messages_after(conversation_id, after_seq)
        messages = [MessageOut.model_validate(m).model_dump(mode="json") for m in rows]
    return _Read(state, messages)


async def conversation_events(
    request: Request, conversation_id: uuid.UUID, after_seq: int, *, typing_of: str
) -> AsyncIterator[str]:
    """The conversation's events from `after_seq` on; `typing_of`: whose typing to forward
    (the widget shows the agent's, the operator the customer's)."""
    state = app_state(request)
    settings, bus, factory = state["settings"], state["live"], state["session_factory"]
    cursor, last_state = after_seq, None
    last_sent = time.monotonic()
    with bus.listen(conversation_topic(conversation_id)) as listener:
        while True:
            read = await run_in_threadpool(_read_conversation, factory, conversation_id, cursor)
            if read.state != last_state:
                last_state = read.state
                yield sse("state", read.state)
                last_sent = time.monotonic()
            for message in read.messages:
                cursor = max(cursor, int(message["seq"]))
                yield sse("message", message, event_id=int(message["seq"]))
                last_sent = time.monotonic()
            if len(read.messages) >= 200:
                continue  # more to catch up on before waiting
            timeout = bus.poll_timeout(settings.live.poll_interval_s, settings.live.keepalive_s)
            waited = await _wait(request, listener, timeout)
            if waited is None:
                return
            for event in waited[1]:
                if event.get("role") == typing_of:
                    yield sse("typing", {"role": typing_of})
                    last_sent = time.monotonic()
            if time.monotonic() - last_sent >= settings.live.keepalive_s:
                yield KEEPALIVE
                last_sent = time.monotonic()


def _read_counts(factory: sessionmaker[Session], operator_id: uuid.UUID) -> dict[str, int]:
    with session_scope(factory) as session:
        counts = InboxRepository(session).counts(operator_id)
    return {"waiting_count": counts.waiting, "mine_count": counts.mine}


async def inbox_events(request: Request, operator_id: uuid.UUID) -> AsyncIterator[str]:
    """The queue's counts for `operator_id`: at connect, on every announced change, and when a
    poll finds them changed."""
    state = app_state(request)
    settings, bus, factory = state["settings"], state["live"], state["session_factory"]
    last: dict[str, int] | None = None
    woken = True
    last_sent = time.monotonic()
    with bus.listen(INBOX) as listener:
        while True:
            counts = await run_in_threadpool(_read_counts, factory, operator_id)
            if woken or counts != last:
                last = counts
                yield sse("inbox", counts)
                last_sent = time.monotonic()
            timeout = bus.poll_timeout(settings.live.poll_interval_s, settings.live.keepalive_s)
            waited = await _wait(request, listener, timeout)
            if waited is None:
                return
            woken = waited[0]
            if time.monotonic() - last_sent >= settings.live.keepalive_s:
                yield KEEPALIVE
                last_sent = time.monotonic()
