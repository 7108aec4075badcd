"""Fixed-window rate limits, shared through Redis when configured, in process otherwise.

A limit is (key, limit, window). Each request increments the counter of the current window;
past the limit the caller gets the seconds until the window ends (for Retry-After). With Redis,
all API processes share the counters, so a limit holds across replicas.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    limit: int
    retry_after: int  # seconds until the window resets; 0 when allowed


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: int) -> Decision: ...

    async def close(self) -> None: ...


class InProcessRateLimiter:
    """Counters in this process only (the embedded default: one API process).

    A counter is keyed by (key, window length, window number), so limits with different window
    lengths never share or confuse counters. Past `max_keys` counters, those of windows that
    have ended are dropped; the counters of current windows are always kept (dropping one would
    let a blocked client through), and the next cleanup waits until the count has doubled.
    """

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._counts: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._cleanup_at = max_keys
        self._clock = clock

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        now = self._clock()
        window = int(now // window_s)
        with self._lock:
            if len(self._counts) > self._cleanup_at:
                self._drop_ended(now)
            count = self._counts.get((key, window_s, window), 0) + 1
            self._counts[(key, window_s, window)] = count
        return _decide(count, limit, now, window, window_s)

    def _drop_ended(self, now: float) -> None:
        self._counts = {k: v for k, v in self._counts.items() if (k[2] + 1) * k[1] > now}
        self._cleanup_at = max(self._max_keys, 2 * len(self._counts))

    @property
    def counters(self) -> int:
        """How many counters are held (for tests and debugging)."""
        return len(self._counts)

    async def close(self) -> None:
        self._counts.clear()


class RedisRateLimiter:
    """Counters in Redis: INCR the window's key, set its expiry on first use, atomically."""

    def __init__(self, url: str, *, prefix: str = "chatdistill:rl:") -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        now = time.time()
        window = int(now // window_s)
        redis_key = f"{self._prefix}{key}:{window_s}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(redis_key)
            pipe.expire(redis_key, window_s + 1, nx=True)
            count, _ = await pipe.execute()
        return _decide(int(count), limit, now, window, window_s)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def _decide(count: int, limit: int, now: float, window: int, window_s: int) -> Decision:
    if count <= limit:
        return Decision(True, count, limit, 0)
    retry_after = max(1, math.ceil((window + 1) * window_s - now))
    return Decision(False, count, limit, retry_after)
