"""Latency of `bench/intents.py`: every model's one-request call timed at batch 1 on one thread,
the models taking turns on the same dev messages, summarised as median / p95 / mean ms."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from distill_worker.data.loaders import Utterance
from distill_worker.teacher.local import torch_threads

LATENCY_RUNS = 100
LATENCY_WARMUP = 10
LATENCY_MESSAGES = 20  # the first dev messages, cycled: every model times the same ones

Call = Callable[[Utterance], object]


def interleaved_latency(
    calls: dict[str, Call], rows: list[Utterance], runs: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Per call: median, p95 and mean ms of one request at batch 1 on one thread. The calls
    take turns (every model, then the next message), so that load from other work on a shared
    machine falls on each model alike and the ratios between them hold."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch_threads(1):
        for i in range(warmup + runs):
            row = rows[i % len(rows)]
            for name, call in calls.items():
                started = time.perf_counter()
                call(row)
                if i >= warmup:
                    times[name].append(1000.0 * (time.perf_counter() - started))
    return {name: summary(values) for name, values in times.items()}


def summary(ms: list[float]) -> dict[str, float]:
    """median / p95 (linear between order statistics, as `measure_latency`) / mean, in ms."""
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }
