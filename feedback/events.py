"""Model-change events: "alias X now points at version Y", over Redis pub/sub.

Whoever moves an alias (the promotion task, the canary check, the admin endpoints) publishes
after the move commits; every chat_api process subscribes and reloads. Pub/sub is fire-and-
forget (a process that is down or reconnecting misses messages), so the event is only a hint
to look now: subscribers re-read the aliases from the store, and poll it as the fallback.
Without Redis (the embedded default) publishing is a no-op and polling does the work.

Redis URLs may carry a password: they are never logged; `safe_url` strips the userinfo.

Errors: `EventError` for a message that is not a model change (subscribers skip it).
Publishing never raises: a Redis failure is logged, the move itself has already committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

from feedback.settings import Settings

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096


class EventError(ValueError):
    """A pub/sub message that is not a model change; it is skipped."""


@dataclass(frozen=True)
class ModelChange:
    alias: str
    version_id: str  # the version the alias points at now ("" if it was cleared)
    reason: str
    at: str  # ISO 8601, UTC
    origin: str  # host:pid of the publisher, for logs

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelChange:
        if len(raw) > MAX_MESSAGE_BYTES:
            raise EventError("model-change message is too long")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError(f"model-change message is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EventError("model-change message is not a JSON object")
        fields = ("alias", "version_id", "reason", "at", "origin")
        values = {k: data.get(k) for k in fields}
        if not all(isinstance(v, str) for v in values.values()) or not values["alias"]:
            raise EventError(f"model-change message needs string fields {', '.join(fields)}")
        return cls(**values)  # type: ignore[arg-type]


def channel_name(settings: Settings) -> str:
    return settings.redis.key_prefix + settings.events.channel


def safe_url(url: str) -> str:
    """The URL without user and password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def publish_model_change(settings: Settings, *, alias: str, version_id: str, reason: str) -> None:
    """Tell every API process that `alias` moved. Call after the move has committed. Without
    Redis: a no-op (they poll). A Redis failure is logged, never raised: the polling fallback
    picks the change up within `events.poll_interval_s`."""
    if not settings.redis.url:
        logger.debug("no Redis configured; %s -> %s is picked up by polling", alias, version_id)
        return
    change = ModelChange(
        alias=alias,
        version_id=version_id,
        reason=reason[:500],
        at=dt.datetime.now(dt.UTC).isoformat(),
        origin=f"{socket.gethostname()}:{os.getpid()}",
    )
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        receivers = client.publish(channel_name(settings), change.to_json())
    except redis.RedisError as exc:
        logger.warning(
            "could not publish %s -> %s on %s (%s); API processes will pick it up by polling",
            alias,
            version_id,
            safe_url(settings.redis.url),
            type(exc).__name__,
        )
        return
    finally:
        client.close()
    logger.info("published %s -> %s to %d subscriber(s)", alias, version_id, receivers)


async def model_changes(
    settings: Settings, *, retry_s: float = 2.0, ready: asyncio.Event | None = None
) -> AsyncIterator[ModelChange]:
    """Yield model changes forever, resubscribing after Redis errors (every `retry_s`).
    `ready` is set each time the subscription is live (tests wait on it). Needs Redis."""
    url = settings.redis.url
    if not url:
        raise ValueError("model-change events need redis.url; without it, poll the store")
    channel = channel_name(settings)
    failing = False
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if failing:
                logger.info("model-change subscription to %s is back", safe_url(url))
            failing = False
            if ready is not None:
                ready.set()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    yield ModelChange.from_json(message["data"])
                except EventError as exc:
                    logger.warning("skipping a message on %s: %s", channel, exc)
        except (redis.RedisError, OSError) as exc:
            if ready is not None:
                ready.clear()
            if not failing:
                logger.warning(
                    "model-change subscription to %s failed (%s); retrying every %.0f s, "
                    "polling the store meanwhile",
                    safe_url(url),
                    type(exc).__name__,
                    retry_s,
                )
            failing = True
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except (redis.RedisError, OSError):
                pass
        await asyncio.sleep(retry_s)
