"""Serving at speed: a real server on loopback driven by closed-loop clients.

    .venv/bin/python bench/serving.py --bundle DIR --json OUT [--clients 1 8 32 64]
        [--duration 10] [--modes single static continuous] [--precisions fp32 int8]
    chatdistill bench serving --bundle DIR --json OUT ...      (the same, from the CLI)
    .venv/bin/python bench/serving.py --synthetic-bundle DIR   (build a production-size bundle
                                                                with random weights, for timing)

For each batching mode (single: one request at a time; static: fixed-window batches run to
completion; continuous: our adaptive continuous batching) and precision, one `chatdistill serve`
process (uvicorn, loopback, embedded SQLite, one API key); all run at once, idle but one, and
each load level drives them in turn through the OpenAI-compatible endpoint with N closed-loop
clients (each sends the next request when its answer arrives) for `--duration` seconds, with
the same fixed prompts (and, with `--reply-tokens`, the same spread of reply lengths).
Figures: replies/s, tokens/s, p50/p95/p99 latency, errors. Plus torch eager one at a time as
the reference, and the decode step time per batch size against its physical bound
(`serving_step.py`). One JSON summary with every figure and the ratios side by side; the client
shares the machine's cores with the server, so compare ratios within a run, not absolute
numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_step import (
    PROMPTS,
    make_synthetic_bundle,
    memory_bandwidth_gbs,
    step_figures,
    torch_reference,
)
from feedback import migrate
from feedback.db import make_engine, make_session_factory, session_scope
from feedback.repositories.operators import ApiKeyRepository
from feedback.settings import Settings
from tests.live.server import running_server

SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway server's key)


def api_key(data_dir: Path) -> str:
    settings = Settings(data_dir=data_dir, auth={"secret_key": SECRET})
    engine = make_engine(settings)
    migrate.upgrade(engine)
    with session_scope(make_session_factory(engine)) as session:
        key = ApiKeyRepository(session).create(name=f"bench-{time.time_ns()}").key
    engine.dispose()
    return key


async def closed_loop(
    base: str, key: str, clients: int, seconds: float, reply_tokens: list[int] | None
) -> dict[str, Any]:
    latencies: list[float] = []
    tokens, errors = 0, 0
    prompts = itertools.cycle(PROMPTS)
    # Reply lengths cycle through a fixed spread (uniform in [lo, hi]): real replies differ in
    # length, which is what static batches pay for (a batch lasts as long as its longest reply).
    lo, hi = reply_tokens or (0, 0)
    limits_cycle = itertools.cycle([lo + (i * 7) % (hi - lo + 1) for i in range(64)] if hi else [0])
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        headers = {"Authorization": f"Bearer {key}"}
        await http.post("/v1/chat/completions", headers=headers,
                        json={"messages": [{"role": "user", "content": "hello"}]})  # fmt: skip
        start = time.perf_counter()
        end = start + seconds

        async def client() -> None:
            nonlocal tokens, errors
            while time.perf_counter() < end:
                body: dict[str, Any] = {"messages": [{"role": "user", "content": next(prompts)}]}
                cap = next(limits_cycle)
                if cap:
                    body["max_tokens"] = cap
                sent = time.perf_counter()
                response = await http.post("/v1/chat/completions", headers=headers, json=body)
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                tokens += response.json()["usage"]["completion_tokens"]

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "clients": clients, "replies": len(latencies), "errors": errors,
        "replies_per_s": round(len(latencies) / elapsed, 2),
        "tokens_per_s": round(tokens / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }  # fmt: skip


def server_env(
    args: argparse.Namespace, data_dir: Path, mode: str, precision: str
) -> dict[str, str]:
    return {
        "CHATDISTILL_DATA_DIR": str(data_dir),
        "CHATDISTILL_AUTH__SECRET_KEY": SECRET,
        "CHATDISTILL_LOG_LEVEL": "WARNING",
        "CHATDISTILL_RATE_LIMIT__ENABLED": "false",
        "CHATDISTILL_SERVING__BUNDLE_DIR": str(args.bundle),
        "CHATDISTILL_SERVING__PRECISION": precision,
        "CHATDISTILL_SERVING__BATCHING": mode,
        "CHATDISTILL_SERVING__MAX_BATCH": str(max(args.clients)),
        "CHATDISTILL_SERVING__MAX_WAIT_MS": str(args.window_ms if mode == "static" else 5),
        "CHATDISTILL_SERVING__LATENCY_TARGET_MS": str(args.latency_target_ms),
        "CHATDISTILL_SERVING__INTRA_OP_THREADS": str(args.threads),
        "PATH": os.environ.get("PATH", ""),
    }


def serve_and_drive(args: argparse.Namespace, data_dir: Path, key: str) -> list[dict[str, Any]]:
    """Every configuration's server runs at once (idle ones cost nothing); each load level
    drives them in turn, so that drift in a shared machine's load spreads over all of them."""
    configs = [(mode, precision) for precision in args.precisions for mode in args.modes]
    rows = []
    with contextlib.ExitStack() as stack:
        bases = {
            config: stack.enter_context(running_server(server_env(args, data_dir, *config)))
            for config in configs
        }
        for clients in args.clients:
            for mode, precision in configs:
                row = asyncio.run(
                    closed_loop(bases[mode, precision], key, clients, args.duration,
                                args.reply_tokens)
                )  # fmt: skip
                row |= {"mode": mode, "precision": precision}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def cache_size() -> str | None:
    """The last-level cache (weights that fit in it are not bound by memory bandwidth)."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    return caches[-1].read_text().strip() if caches else None


def ratios(runs: list[dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    at = {(r["mode"], r["precision"], r["clients"]): r for r in runs}
    out: dict[str, Any] = {}
    for (mode, precision, n), row in at.items():
        single = at.get(("single", precision, n))
        unloaded = at.get((mode, precision, min(clients)))
        if single and mode != "single":
            out[f"{mode}/single throughput {precision} @{n}"] = round(
                row["replies_per_s"] / max(single["replies_per_s"], 1e-9), 2
            )
        if unloaded and n != min(clients):
            out[f"{mode} p95@{n} / p50@{min(clients)} {precision}"] = round(
                row["p95_ms"] / max(unloaded["p50_ms"], 1e-9), 2
            )
        fp32 = at.get((mode, "fp32", n))
        if precision == "int8" and fp32:
            out[f"int8/fp32 throughput {mode} @{n}"] = round(
                row["replies_per_s"] / max(fp32["replies_per_s"], 1e-9), 2
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--modes", nargs="+", default=["single", "static", "continuous"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--window-ms", type=float, default=20.0, help="static batch window")
    parser.add_argument("--latency-target-ms", type=float, default=2000.0)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    parser.add_argument(
        "--reply-tokens", type=int, nargs=2, metavar=("MIN", "MAX"),
        help="send max_tokens cycling over [MIN, MAX] (variable reply lengths; a synthetic "
        "bundle's random weights rarely stop on their own)",
    )  # fmt: skip
    parser.add_argument("--synthetic-bundle", type=Path, help="build a timing bundle and exit")
    args = parser.parse_args()
    if args.synthetic_bundle:
        print(make_synthetic_bundle(args.synthetic_bundle))
        return
    if args.bundle is None:
        parser.error("--bundle is required (or --synthetic-bundle DIR to build one)")
    load_before = os.getloadavg()
    bandwidth = memory_bandwidth_gbs()
    cache_bandwidth = memory_bandwidth_gbs(megabytes=16, repeats=20)
    steps = [
        row
        for precision in args.precisions
        for threads in sorted({1, args.threads, 2})
        for row in step_figures(
            args.bundle, precision, [1, 8, 32, 64], threads, bandwidth, cache_bandwidth
        )
    ]
    for row in steps:
        print(json.dumps({"step": row}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        key = api_key(Path(tmp))
        runs = serve_and_drive(args, Path(tmp), key)
    reference = None if args.no_torch else torch_reference(args.bundle, min(args.duration, 10))
    summary = {
        "bundle": str(args.bundle), "cpus": os.cpu_count(), "duration_s": args.duration,
        "memory_bandwidth_gbs": round(bandwidth, 2), "last_level_cache": cache_size(),
        "cache_bandwidth_gbs": round(cache_bandwidth, 2),
        "reply_tokens": args.reply_tokens, "load_average_before_after": [
            round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "decode_steps": steps, "runs": runs,
        "torch_eager_one_at_a_time": reference, "ratios": ratios(runs, args.clients),
    }  # fmt: skip
    print(json.dumps(summary["ratios"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
