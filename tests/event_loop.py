"""Running a coroutine to completion from a synchronous test.

Playwright's sync API (tests/browser) keeps an event loop running in the main thread of a test
worker for the whole session, and `asyncio.run` refuses to start while one runs in its thread.
`run_async` runs the coroutine in a fresh loop on a thread of its own, whatever else that test
worker has run before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, coro).result()
