"""The batcher with a real tiny bundle on ONNX Runtime: continuous batching gives the same replies
as one-at-a-time decoding (through the padded `decoder_step` graph), streaming and
non-streaming give the same text, aborts and deadlines free the batch, a full queue refuses and
recovers, and a hot swap under load loses no request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from bundle_runtime.onnx_student import OnnxStudent
from chat_api.batching.loop import Batcher, Completed, TokenDelta
from chat_api.batching.scheduler import DeadlineExceeded, Overloaded, SchedulerConfig
from chat_api.runtime.serving import ReplyEngine, ServingOptions
from tests.event_loop import run_async
from tests.fixtures.tiny_bundle import TinyBundle

T = TypeVar("T")
PROMPTS = [
    "where is my order", "i want a refund", "tell me a joke", "track my package please",
    "give me my money back", "what is the weather today", "has my order shipped yet",
    "refund my purchase please", "when will my parcel arrive", "who won the game last night",
]  # fmt: skip


def run_with(
    bundle: Path, body: Callable[[Batcher], Awaitable[T]], precision: str = "fp32", **cfg: object
) -> T:
    engine = ReplyEngine(ServingOptions(precision=precision))  # type: ignore[arg-type]
    engine.load(bundle, "v-a")
    batcher = Batcher(engine, SchedulerConfig(**cfg))  # type: ignore[arg-type]
    batcher.start()
    try:
        return run_async(body(batcher))
    finally:
        batcher.stop()


async def staggered(batcher: Batcher, prompts: list[str], gap_s: float = 0.002) -> list[str]:
    """Submit with small gaps, so that requests join a batch that is mid-generation."""

    async def one(i: int, text: str) -> str:
        await asyncio.sleep(i * gap_s)
        _, reply = await batcher.reply([("customer", text)])
        return reply.text

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(prompts))))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_continuous_batching_gives_the_one_at_a_time_replies(
    tiny_bundle: TinyBundle, precision: str
) -> None:
    reference = OnnxStudent(tiny_bundle.path, precision=precision)  # type: ignore[arg-type]
    expected = [reference.reply([("customer", p)]).text for p in PROMPTS * 2]
    got = run_with(tiny_bundle.path, lambda b: staggered(b, PROMPTS * 2), precision)
    assert got == expected
    assert "your order is on its way" in got


def test_streaming_and_non_streaming_give_the_same_text(tiny_bundle: TinyBundle) -> None:
    async def body(batcher: Batcher) -> list[tuple[str, str, str]]:
        out = []
        for prompt in PROMPTS[:4]:
            deltas: list[str] = []
            final = None
            async for event in batcher.submit([("customer", prompt)], stream=True).events():
                if isinstance(event, TokenDelta):
                    deltas.append(event.text)
                else:
                    final = event
            assert isinstance(final, Completed) and len(deltas) >= 2
            _, plain = await batcher.reply([("customer", prompt)])
            out.append(("".join(deltas), final.reply.text, plain.text))
        return out

    for streamed, final, plain in run_with(tiny_bundle.path, body):
        assert streamed == final == plain != ""


def test_an_aborted_stream_leaves_the_batch(tiny_bundle: TinyBundle) -> None:
    async def body(batcher: Batcher) -> tuple[int, int]:
        events = batcher.submit([("customer", "where is my order")], stream=True).events()
        async for event in events:
            assert isinstance(event, TokenDelta)
            break  # the client went away after the first token
        await events.aclose()
        await asyncio.sleep(0.2)
        steps = batcher.steps
        await asyncio.sleep(0.2)
        return steps, batcher.steps

    before, after = run_with(tiny_bundle.path, body)
    assert before == after  # nothing runs for the aborted request any more
    assert before < 8  # and it stopped early: the full reply takes more steps


def test_a_request_past_its_deadline_fails(tiny_bundle: TinyBundle) -> None:
    async def body(batcher: Batcher) -> str:
        ticket = batcher.submit([("customer", "where is my order")], deadline_s=0.0)
        with pytest.raises(DeadlineExceeded, match="deadline"):
            await ticket.result()
        _, reply = await batcher.reply([("customer", "where is my order")])
        return reply.text

    assert run_with(tiny_bundle.path, body) == "your order is on its way"


def test_a_full_queue_refuses_and_recovers(tiny_bundle: TinyBundle) -> None:
    async def body(batcher: Batcher) -> tuple[int, int, str]:
        tickets, refused = [], 0
        for _ in range(12):
            try:
                tickets.append(batcher.submit([("customer", "i want a refund")]))
            except Overloaded as exc:
                refused += 1
                assert exc.retry_after_s >= 1
        results = [await t.result() for t in tickets]
        _, later = await batcher.reply([("customer", "i want a refund")])
        return refused, len(results), later.text

    refused, answered, later = run_with(tiny_bundle.path, body, mode="single", max_queue=3)
    assert refused >= 8 and answered == 12 - refused
    assert later == "we will refund you within five days"


def test_a_swap_under_load_loses_no_request(tiny_bundle: TinyBundle) -> None:
    expected = OnnxStudent(tiny_bundle.path, precision="fp32")
    want = {p: expected.reply([("customer", p)]).text for p in PROMPTS}
    engine = ReplyEngine(ServingOptions(precision="fp32"))
    engine.load(tiny_bundle.path, "v-a")
    batcher = Batcher(engine, SchedulerConfig())
    batcher.start()
    swapped_at: list[float] = []

    def swap() -> None:  # loads beside the serving model, then swaps between steps
        engine.load(tiny_bundle.path, "v-b")
        swapped_at.append(time.perf_counter())

    async def body() -> list[tuple[str, str, str, float, float]]:
        results: list[tuple[str, str, str, float, float]] = []
        stop = asyncio.Event()

        async def client(i: int) -> None:  # closed loop: always one request in flight
            n = 0
            while not stop.is_set():
                prompt = PROMPTS[(i + n) % len(PROMPTS)]
                sent = time.perf_counter()
                version, reply = await batcher.reply([("customer", prompt)])
                results.append((prompt, version, reply.text, sent, time.perf_counter()))
                n += 1

        clients = [asyncio.create_task(client(i)) for i in range(8)]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(swap)
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*clients)
        return results

    try:
        results = run_async(body())
    finally:
        batcher.stop()
    (swap_time,) = swapped_at
    assert all(text == want[prompt] for prompt, _, text, _, _ in results)
    assert {v for _, v, _, sent, _ in results if sent > swap_time} == {"v-b"}
    assert {v for _, v, _, _, done in results if done < swap_time} == {"v-a"}
    # Requests in flight at the swap finished on the model they started with.
    straddling = [v for _, v, _, sent, done in results if sent < swap_time < done]
    assert "v-a" in straddling
