"""JSON over HTTP to a teacher server, with a concurrency bound, timeouts and retries.

`TeacherHttp.request` returns the answer's JSON object or raises one of the teacher errors:

    connect error, timeout, broken connection,   retried `max_retries` times with exponential
    HTTP 429, HTTP 5xx                            backoff, then TeacherUnavailable
    an answer that is not HTTP at all             retried likewise, then TeacherBadResponse
    HTTP 4xx (not 429)                            TeacherRejected at once (fix the request)
    a body that is not a JSON object              TeacherBadResponse at once

Backoff: `backoff_s`, doubled each attempt, at most `max_backoff_s`; a 429/503 with
`Retry-After: <seconds>` waits that long instead when it is longer (also capped). Every request
holds one of `max_concurrency` slots, shared by all threads using the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from distill_worker.teacher.base import TeacherBadResponse, TeacherRejected, TeacherUnavailable


class TeacherHttp:
    """An httpx client for one teacher server; thread-safe; close() when done."""

    def __init__(
        self,
        base_url: str,
        teacher_id: str,
        model: str,
        *,
        api_key: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        max_concurrency: int,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0 or max_concurrency < 1 or backoff_s < 0 or timeout_s <= 0:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1, backoff_s >= 0")
        if connect_timeout_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("need connect_timeout_s > 0 and max_backoff_s >= backoff_s")
        self.base_url = base_url
        self.teacher_id = teacher_id
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(max_concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=max_concurrency),
        )

    def close(self) -> None:
        self._client.close()

    def bad(self, problem: str) -> TeacherBadResponse:
        return TeacherBadResponse(self.teacher_id, f"{self.base_url}: {problem}")

    def request(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        last = ""
        protocol_error = False
        wait = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                backoff = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                self._sleep(max(backoff, min(wait, self.max_backoff_s)))
            wait = 0.0
            try:
                with self._slots:
                    response = self._client.request(method, path, json=payload)
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                last = f"{type(exc).__name__}: {exc}"
                protocol_error = isinstance(exc, httpx.ProtocolError)
                continue
            protocol_error = False
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                wait = _retry_after(response)
                continue
            if response.status_code >= 400:
                raise TeacherRejected(
                    self.teacher_id,
                    f"{method} {url} answered HTTP {response.status_code}: {response.text[:300]}",
                )
            try:
                data = response.json()
            except ValueError as exc:
                raise self.bad(
                    f"{method} {path} answered non-JSON: {response.text[:200]!r}"
                ) from exc
            if not isinstance(data, dict):
                raise self.bad(f"{method} {path} answered JSON that is not an object")
            return data
        if protocol_error:
            raise self.bad(f"{method} {url} did not answer HTTP ({last})")
        raise TeacherUnavailable(
            self.teacher_id,
            f"{method} {url} failed {self.max_retries + 1} times; last: {last}",
            f"check that the vLLM server at {self.base_url} is running, reachable from here and "
            f"serving model {self.model!r}, and not overloaded; the task can be retried",
        )


def _retry_after(response: httpx.Response) -> float:
    """Seconds a 429/503 asks us to wait (`Retry-After: <seconds>`); 0 when absent or a date."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0
