"""The live bus: wakes the widget's and the operators' event streams when something changed.

A route changes the store, commits, and THEN announces (`announce_conversation`,
`announce_inbox`, `announce_change`); `typing` is ephemeral and stored nowhere. Announcing never
blocks and never raises: it is safe from a threadpool thread and from the event loop.

    topic "conv:<id>"   a conversation's messages or state changed, or someone is typing
    topic "inbox"       the operators' queue changed (a conversation waits, was claimed, ...)

With Redis (`redis.url`) an announcement is PUBLISHed on `<prefix>live:<topic>`; one pattern
subscription per API process hears them all and wakes that process's streams, so an operator
on process A reaches a widget on process B. Without Redis (or while its subscription is down)
an announcement wakes the streams of its own process, and every stream also re-reads the store
every `live.poll_interval_s`. An announcement is only a wake-up: the database is the source of
truth, a woken stream reads the messages after its cursor (`seq`), so a lost or duplicated
wake-up never loses or duplicates a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis

from feedback.events import safe_url
from feedback.handoff import Change
from feedback.models import ConversationState

if TYPE_CHECKING:
    from chat_api.state import AppState

logger = logging.getLogger(__name__)

INBOX = "inbox"
MAX_PENDING = 32  # typing events kept per listener between two reads; a wake-up needs none


def conversation_topic(conversation_id: uuid.UUID) -> str:
    return f"conv:{conversation_id}"


class Listener:
    """One stream's mailbox: set when its topic is announced; holds the typing events."""

    def __init__(self) -> None:
        self._woken = asyncio.Event()
        self._pending: list[dict[str, Any]] = []

    def put(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "typing" and len(self._pending) < MAX_PENDING:
            self._pending.append(event)
        self._woken.set()

    async def wait(self, timeout_s: float) -> tuple[bool, list[dict[str, Any]]]:
        """Wait for an announcement, at most `timeout_s`: (woken, typing events since)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        woken = self._woken.is_set()
        self._woken.clear()
        pending, self._pending = self._pending, []
        return woken, pending


class LiveBus:
    """Topics to listeners in this process, bridged across processes by Redis when set."""

    def __init__(self, redis_url: str | None, key_prefix: str, *, retry_s: float = 2.0) -> None:
        self._url = redis_url
        self._prefix = key_prefix + "live:"
        self._retry_s = retry_s
        self._listeners: dict[str, set[Listener]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()  # set while the Redis subscription is live

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._url:
            self._publisher = aioredis.Redis.from_url(
                self._url, socket_timeout=2, socket_connect_timeout=2
            )
            self._task = asyncio.create_task(self._subscribe_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher is not None:
            await self._publisher.aclose()
        self._loop = None

    def poll_timeout(self, poll_interval_s: float, keepalive_s: float) -> float:
        """How long a stream waits before it re-reads the store anyway."""
        return keepalive_s if self.subscribed.is_set() else poll_interval_s

    @contextlib.contextmanager
    def listen(self, topic: str) -> Iterator[Listener]:
        """Register before the first read, so nothing announced after it is missed."""
        listener = Listener()
        self._listeners.setdefault(topic, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(topic)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[topic]

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Announce from any thread; never blocks, never raises."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the app is shutting down
            loop.call_soon_threadsafe(self._publish_on_loop, topic, event)

    def _publish_on_loop(self, topic: str, event: dict[str, Any]) -> None:
        if self._publisher is None or not self.subscribed.is_set():
            self._dispatch(topic, event)
            return
        task = asyncio.create_task(self._publish_redis(topic, event))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish_redis(self, topic: str, event: dict[str, Any]) -> None:
        assert self._publisher is not None
        try:
            await self._publisher.publish(self._prefix + topic, json.dumps(event))
        except (redis.RedisError, OSError) as exc:
            logger.warning("live: publishing on Redis failed (%s); waking local streams only", exc)
            self._dispatch(topic, event)

    def _dispatch(self, topic: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners.get(topic, ())):
            listener.put(event)

    def _wake_all(self) -> None:
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.put({"kind": "resync"})

    async def _subscribe_forever(self) -> None:
        assert self._url is not None
        failing = False
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._prefix + "*")
                self.subscribed.set()
                if failing:
                    logger.info("live: Redis subscription to %s is back", safe_url(self._url))
                failing = False
                self._wake_all()  # announcements may have been missed while it was down
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "pmessage":
                        self._on_message(message["channel"], message["data"])
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                if not failing:
                    logger.warning(
                        "live: Redis subscription to %s failed (%s); streams poll the store "
                        "until it is back",
                        safe_url(self._url),
                        type(exc).__name__,
                    )
                failing = True
                await asyncio.sleep(self._retry_s)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    def _on_message(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            event = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(event, dict):
            self._dispatch(name[len(self._prefix) :], event)


# --- what routes call, after their commit --------------------------------------------------------


def announce_conversation(state: AppState, conversation_id: uuid.UUID) -> None:
    """A conversation's messages or state changed (committed)."""
    state["live"].publish(conversation_topic(conversation_id), {"kind": "change"})


def announce_inbox(state: AppState) -> None:
    """The operators' queue changed (committed)."""
    state["live"].publish(INBOX, {"kind": "change"})


def announce_change(state: AppState, change: Change | None) -> None:
    """A committed `feedback.handoff` change: the conversation's streams and the inbox."""
    if change is None:
        return
    announce_conversation(state, change.conversation_id)
    if change.to_state == ConversationState.WAITING.value:
        became_waiting(state, change.conversation_id)
    else:
        announce_inbox(state)


def became_waiting(state: AppState, conversation_id: uuid.UUID) -> None:
    """A conversation entered the operators' queue (committed): the customer asked, or the bot
    handed off. The one place to hook what else a new handoff sets off (the webhook)."""
    announce_inbox(state)
    if state["webhook"] is not None:
        state["webhook"].notify(conversation_id)


def typing(state: AppState, conversation_id: uuid.UUID, who: str) -> None:
    """Someone (`agent` or `customer`) is typing in the conversation; nothing is stored."""
    state["live"].publish(conversation_topic(conversation_id), {"kind": "typing", "role": who})
