"""`Batcher`: the shell around the scheduler. One worker thread runs schedule -> execute ->
update; the event loop only submits, aborts, and receives events.

The worker thread owns the model work: per loaded model a `RunningBatch` (a hot swap leaves the
old model's batch running until its rows finish; new requests go to the model current when they
were submitted). Each request has an `asyncio.Queue` on the submitting event loop; the worker
puts `TokenDelta`s (streaming requests only) and finally a `Completed` or an exception on it with
`call_soon_threadsafe`. A request whose consumer goes away (client disconnected) is aborted and
stops costing compute at the next step.

Errors (raised to the caller): `scheduler.Overloaded` at submit (the queue is full),
`scheduler.DeadlineExceeded`, `serving.NoModelLoaded`, and `StepFailed` when the model raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass

from bundle_runtime.onnx_student import StudentReply
from bundle_runtime.running_batch import RunningBatch
from chat_api.batching.scheduler import BatchingError, DeadlineExceeded, Scheduler, SchedulerConfig
from chat_api.runtime.serving import LoadedModel, NoModelLoaded, ReplyEngine

logger = logging.getLogger(__name__)


class StepFailed(BatchingError):
    """The model raised during a step; the request failed (others in later steps go on)."""


@dataclass(frozen=True)
class TokenDelta:
    text: str


@dataclass(frozen=True)
class Completed:
    version: str
    reply: StudentReply


Event = TokenDelta | Completed | BaseException


@dataclass
class _Request:
    id: int
    model: LoadedModel
    source: str
    stream: bool
    queue: asyncio.Queue[Event]
    loop: asyncio.AbstractEventLoop
    submitted: float

    def put(self, event: Event) -> None:
        # RuntimeError: the submitting loop is closed, nobody is listening.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class Ticket:
    """One submitted request: iterate `events()` (streaming) or await `result()`."""

    def __init__(self, batcher: Batcher, request: _Request) -> None:
        self._batcher, self._request = batcher, request
        self.version = request.model.version_id

    async def events(self) -> AsyncGenerator[TokenDelta | Completed]:
        done = False
        try:
            while not done:
                event = await self._request.queue.get()
                if isinstance(event, BaseException):
                    done = True
                    raise event
                done = isinstance(event, Completed)
                yield event
        finally:
            if not done:
                self._batcher.abort(self._request.id)

    async def result(self) -> Completed:
        async for event in self.events():
            if isinstance(event, Completed):
                return event
        raise StepFailed("the request ended without a reply")  # pragma: no cover


class Batcher:
    def __init__(self, engine: ReplyEngine, config: SchedulerConfig) -> None:
        self.engine = engine
        self.config = config
        self._scheduler = Scheduler(config)
        self._cond = threading.Condition()
        self._requests: dict[int, _Request] = {}
        self._batches: dict[int, tuple[LoadedModel, RunningBatch]] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # model steps run (for tests and metrics)

    # ------------------------------------------------------------------------- event loop side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def check_capacity(self) -> None:
        """Raise Overloaded if a request submitted now would be refused."""
        with self._cond:
            self._scheduler.check_capacity()

    def submit(
        self,
        turns: list[tuple[str, str]],
        *,
        max_new_tokens: int | None = None,
        stream: bool = False,
        priority: int = 1,
        deadline_s: float | None = None,
        route_key: str | None = None,
    ) -> Ticket:
        """Queue a reply on the current model (or the canary, for the conversation `route_key`
        when it falls in the canary's share); call on an event loop. Raises NoModelLoaded,
        Overloaded."""
        model = self.engine.pick(route_key)
        if model is None:
            raise NoModelLoaded("no model is loaded")
        limit = model.student.limit(max_new_tokens)
        request = _Request(
            next(self._ids), model, model.student.source_of(turns), stream, asyncio.Queue(),
            asyncio.get_running_loop(), time.perf_counter(),
        )  # fmt: skip
        with self._cond:
            self._scheduler.submit(
                request.id, time.monotonic(), max_new_tokens=limit, priority=priority,
                deadline_s=deadline_s,
            )  # fmt: skip
            self._requests[request.id] = request
            self._cond.notify()
        return Ticket(self, request)

    async def reply(
        self,
        turns: list[tuple[str, str]],
        max_new_tokens: int | None = None,
        priority: int = 1,
        route_key: str | None = None,
    ) -> tuple[str, StudentReply]:
        """-> (model version, reply): one whole reply through the batch."""
        ticket = self.submit(
            turns, max_new_tokens=max_new_tokens, priority=priority, route_key=route_key
        )
        done = await ticket.result()
        return done.version, done.reply

    def abort(self, request_id: int) -> None:
        with self._cond:
            self._scheduler.abort(request_id)
            self._cond.notify()

    # ------------------------------------------------------------------------- worker thread

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closing:
                    break
                plan = self._scheduler.schedule(time.monotonic())
                gone = {
                    rid: self._requests.pop(rid)
                    for rid in plan.expired + plan.aborted
                    if rid in self._requests
                }
                if plan.idle and not gone:
                    self._cond.wait(timeout=plan.wait_s)
                    continue
                admit = [self._requests[rid] for rid in plan.admit]
                running = [self._requests[rid] for rid in plan.running]
            for rid in plan.expired:
                if rid in gone:
                    gone[rid].put(DeadlineExceeded("the reply was not ready before its deadline"))
            self._forget(gone.values())
            if admit or running:
                try:
                    self._step(admit, running)
                except Exception as exc:  # the worker thread must outlive any one step
                    logger.exception("a batch step failed after the model ran")
                    with self._cond:
                        alive = [r for r in admit + running if r.id in self._requests]
                    self._fail(alive, StepFailed(f"the reply failed: {exc}"))
        with self._cond:
            left = list(self._requests.values())
            self._requests.clear()
        for request in left:
            request.put(StepFailed("the server is shutting down; retry"))

    def _step(self, admit: list[_Request], running: list[_Request]) -> None:
        start = time.perf_counter()
        produced: dict[int, int] = {}
        try:
            models = {key: model for key, (model, _) in self._batches.items()}
            models.update({id(r.model): r.model for r in admit})
            for model in models.values():
                batch = self._batch(model)
                items = [(r.id, r.source, r.submitted) for r in admit if r.model is model]
                if items or len(batch):
                    produced.update(batch.advance(items))
        except Exception as exc:
            logger.exception("a model step failed; failing its %d requests", len(produced))
            self._fail(admit + running, StepFailed(f"the model failed: {exc}"))
            return
        step_s = time.perf_counter() - start
        self.steps += 1
        with self._cond:
            live = {rid: t for rid, t in produced.items() if rid in self._requests}
            eos = {rid: self._requests[rid].model.student.eos == t for rid, t in live.items()}
            finished = self._scheduler.update(eos, step_s, time.monotonic())
            requests = {rid: self._requests[rid] for rid in live}
            for f in finished:
                self._requests.pop(f.request_id, None)
        done = {f.request_id: f.reason == "stop" for f in finished}
        for rid, request in requests.items():
            if request.stream and rid not in done:
                delta = self._batches[id(request.model)][1].text_delta(rid)
                if delta:
                    request.put(TokenDelta(delta))
        self._finish([requests[rid] for rid in done], done)

    def _finish(self, requests: list[_Request], done: dict[int, bool]) -> None:
        for key, (model, batch) in list(self._batches.items()):
            mine = {r.id: done[r.id] for r in requests if r.model is model}
            if not mine:
                continue
            replies = batch.replies(mine)
            for request in requests:
                if request.id in replies:
                    reply = replies[request.id]
                    if request.stream:
                        delta = batch.text_delta(request.id, final=reply.text)
                        if delta:
                            request.put(TokenDelta(delta))
                    request.put(Completed(model.version_id, reply))
            batch.remove(mine)
            self._drop_if_retired(key)

    def _forget(self, requests: Iterable[_Request]) -> None:
        by_model: dict[int, list[int]] = {}
        for request in requests:
            by_model.setdefault(id(request.model), []).append(request.id)
        for key, ids in by_model.items():
            if key in self._batches:
                self._batches[key][1].remove(ids)
                self._drop_if_retired(key)

    def _fail(self, requests: list[_Request], error: BaseException) -> None:
        with self._cond:
            for request in requests:
                self._scheduler.abort(request.id)
                self._requests.pop(request.id, None)
        for request in requests:
            request.put(error)
        self._forget(requests)

    def _batch(self, model: LoadedModel) -> RunningBatch:
        if id(model) not in self._batches:
            self._batches[id(model)] = (model, RunningBatch(model.student))
        return self._batches[id(model)][1]

    def _drop_if_retired(self, key: int) -> None:
        """An empty batch of a model that is no longer current is freed (after a swap)."""
        model, batch = self._batches[key]
        if not len(batch) and not self.engine.is_serving(model):
            del self._batches[key]
