"""The batch scheduler: pure, synchronous logic (no asyncio, no model, time passed in).

Continuous batching at decode-step granularity, in the shape of vLLM v1's scheduler: the shell
calls `schedule(now)` -> a `StepPlan` (who leaves, who joins, who runs), runs one model step for
the plan, and reports what each row produced with `update(...)`. Requests join between steps and
leave as soon as they finish, hit their token limit, pass their deadline or are aborted.

Adaptation: the batch cap is the largest batch whose predicted step time (a line `a + b * B`
fitted online to the measured steps) keeps a reply of the mean length within the latency
target, clipped to `max_batch`. When nothing is running, a newcomer waits for companions only
when the arrival rate predicts a companion within `max_wait_s`, and no longer than the expected
gap between arrivals; otherwise it starts at once (later arrivals join between steps anyway).
Mode "static" (the fixed-window baseline) admits only into an empty batch and always waits the
window; mode "single" runs one request at a time.

Priorities: a lower `priority` number is admitted first (operator previews 0, widget 1);
equal priorities are first come, first served.

Errors:
    BatchingError
    ├── Overloaded        the waiting queue is full; retry after `retry_after_s`
    └── DeadlineExceeded  the request was not finished before its deadline
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["continuous", "static", "single"]


class BatchingError(Exception):
    """Base of the batcher's errors."""


class Overloaded(BatchingError):
    """The waiting queue is full; the API answers 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BatchingError):
    """The request did not finish before its deadline; retry, or raise the deadline."""


@dataclass(frozen=True)
class SchedulerConfig:
    mode: Mode = "continuous"
    max_batch: int = 32  # hard cap on rows in one step
    max_queue: int = 256  # waiting requests beyond this are refused (Overloaded)
    latency_target_s: float = 1.0  # a reply of mean length should finish within this
    max_wait_s: float = 0.005  # longest a newcomer waits for companions in an idle batch
    deadline_s: float = 30.0  # default per-request deadline

    def __post_init__(self) -> None:
        if self.mode not in ("continuous", "static", "single"):
            raise ValueError("batching mode must be continuous, static or single")
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        if self.latency_target_s <= 0 or self.max_wait_s < 0 or self.deadline_s <= 0:
            raise ValueError("latency target and deadline must be positive, max wait >= 0")


@dataclass
class Entry:
    request_id: int
    max_new_tokens: int
    deadline: float  # absolute, in the caller's clock
    priority: int
    arrived: float
    generated: int = 0


@dataclass(frozen=True)
class StepPlan:
    """One step: drop `expired` and `aborted` rows, prefill `admit`, decode `running`."""

    admit: list[int] = field(default_factory=list)  # newcomers: encoder + first decoder step
    running: list[int] = field(default_factory=list)  # already running: one decoder step
    expired: list[int] = field(default_factory=list)  # deadline passed: fail them
    aborted: list[int] = field(default_factory=list)  # caller gave up: free their state
    wait_s: float | None = None  # nothing to run now: call again after this (None: on submit)

    @property
    def idle(self) -> bool:
        return not self.admit and not self.running


@dataclass(frozen=True)
class Finished:
    request_id: int
    reason: Literal["stop", "length"]


class Scheduler:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._waiting: list[tuple[int, int, Entry]] = []  # heap of (priority, seq, entry)
        self._seq = itertools.count()
        self._entries: dict[int, Entry] = {}
        self._running: list[int] = []  # admission order
        self._aborted: set[int] = set()
        self._rate = 0.0  # arrivals per second, exponentially weighted
        self._last_arrival: float | None = None
        self._step_fit = [0.0, 0.0, 0.0, 0.0, 0.0]  # weighted sums: n, x, y, xx, xy
        self._mean_tokens = 16.0

    # ------------------------------------------------------------------------- intake

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> list[int]:
        return list(self._running)

    def check_capacity(self) -> None:
        """Raise Overloaded if a new request would be refused now."""
        if len(self._waiting) >= self.config.max_queue:
            retry = max(1, math.ceil(self._drain_estimate_s()))
            raise Overloaded(
                f"the server is at capacity ({len(self._waiting)} requests waiting); "
                f"retry in {retry} s",
                retry,
            )

    def submit(
        self,
        request_id: int,
        now: float,
        *,
        max_new_tokens: int,
        deadline_s: float | None = None,
        priority: int = 1,
    ) -> None:
        """Queue a request. Raises Overloaded when the queue is full."""
        self.check_capacity()
        if request_id in self._entries:
            raise ValueError(f"request {request_id} is already scheduled")
        if self._last_arrival is not None:
            gap = max(now - self._last_arrival, 1e-6)
            self._rate = 0.8 * self._rate + 0.2 * (1.0 / gap)
        self._last_arrival = now
        entry = Entry(
            request_id,
            max(1, max_new_tokens),
            now + (self.config.deadline_s if deadline_s is None else deadline_s),
            priority,
            now,
        )
        self._entries[request_id] = entry
        heapq.heappush(self._waiting, (priority, next(self._seq), entry))

    def abort(self, request_id: int) -> None:
        """The caller gave up (client disconnected): it leaves at the next step."""
        if request_id in self._entries:
            self._aborted.add(request_id)

    # ------------------------------------------------------------------------- stepping

    def batch_cap(self) -> int:
        """The largest batch whose predicted reply time stays within the latency target."""
        cfg = self.config
        if cfg.mode == "single":
            return 1
        a, b = self._step_line()
        if b <= 0.0:
            return cfg.max_batch
        per_step = cfg.latency_target_s / max(self._mean_tokens, 1.0)
        return max(1, min(cfg.max_batch, int((per_step - a) / b + 1e-9)))

    def schedule(self, now: float) -> StepPlan:
        aborted = [r for r in self._aborted if r in self._entries]
        for rid in aborted:
            self._drop(rid)
        self._aborted.clear()
        expired = [rid for rid, e in self._entries.items() if e.deadline <= now]
        for rid in expired:
            self._drop(rid)
        admit = self._admissions(now)
        wait = None
        if not admit and not self._running and self._waiting:
            wait = self._admission_wait(now)
        running = list(self._running)
        self._running.extend(admit)
        return StepPlan(admit, running, expired, aborted, wait)

    def update(self, produced: dict[int, bool], step_s: float, now: float) -> list[Finished]:
        """`produced`: request id -> whether it emitted EOS this step (every admitted and
        running row of the plan that is still scheduled). -> the rows that leave now."""
        del now
        if produced:
            self._fit_step(len(produced), step_s)
        done: list[Finished] = []
        for rid, eos in produced.items():
            entry = self._entries.get(rid)
            if entry is None:
                continue
            entry.generated += 0 if eos else 1
            if eos or entry.generated >= entry.max_new_tokens:
                done.append(Finished(rid, "stop" if eos else "length"))
                self._mean_tokens = 0.9 * self._mean_tokens + 0.1 * entry.generated
                self._drop(rid)
        return done

    # ------------------------------------------------------------------------- internals

    def _admissions(self, now: float) -> list[int]:
        if not self._waiting:
            return []
        if self.config.mode != "continuous" and self._running:
            return []  # static / single: a batch runs to completion before the next
        room = self.batch_cap() - len(self._running)
        if room <= 0:
            return []
        if not self._running and self._admission_wait(now) > 0.0:
            return []
        out: list[int] = []
        while self._waiting and len(out) < room:
            _, _, entry = heapq.heappop(self._waiting)
            out.append(entry.request_id)
        return out

    def _admission_wait(self, now: float) -> float:
        """How much longer the oldest waiting request should wait for companions."""
        cfg = self.config
        if cfg.mode == "single" or len(self._waiting) >= self.batch_cap():
            return 0.0
        waited = now - min(e.arrived for _, _, e in self._waiting)
        if cfg.mode == "static":
            return max(0.0, cfg.max_wait_s - waited)
        # Continuous: later arrivals join between steps anyway, so wait only for a companion
        # expected within the window, and no longer than the expected gap between arrivals.
        gap = 1.0 / self._rate if self._rate > 0 else math.inf
        if gap > cfg.max_wait_s:
            return 0.0
        return max(0.0, gap - waited)

    def _drop(self, rid: int) -> None:
        self._entries.pop(rid, None)
        if rid in self._running:
            self._running.remove(rid)
        else:
            self._waiting = [w for w in self._waiting if w[2].request_id != rid]
            heapq.heapify(self._waiting)

    def _fit_step(self, batch: int, step_s: float) -> None:
        decay = 0.98
        x, y = float(batch), step_s
        s = self._step_fit
        for i, v in enumerate((1.0, x, y, x * x, x * y)):
            s[i] = decay * s[i] + v

    def _step_line(self) -> tuple[float, float]:
        """(a, b) of step seconds ~ a + b * batch; b = 0 until two batch sizes were seen."""
        n, sx, sy, sxx, sxy = self._step_fit
        if n < 1e-9:
            return 0.0, 0.0
        var = sxx / n - (sx / n) ** 2
        if var < 1e-6:
            return sy / n, 0.0
        b = max((sxy / n - (sx / n) * (sy / n)) / var, 0.0)
        return max(sy / n - b * sx / n, 0.0), b

    def _drain_estimate_s(self) -> float:
        a, b = self._step_line()
        step = a + b * max(len(self._running), 1) or 0.01
        batches = len(self._waiting) / max(self.batch_cap(), 1)
        return batches * self._mean_tokens * step
