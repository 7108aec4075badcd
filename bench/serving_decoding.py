"""What the decoding controls cost the batcher: the manifest's controls against plain greedy.

    .venv/bin/python bench/serving_decoding.py --bundle DIR --json OUT [--clients 1 8 32]
        [--duration 10] [--precision int8] [--mode continuous] [--repeats 2]

Two `chatdistill serve` processes on loopback, run at once (one idle while the other is
driven): one with the bundle's decoding (no serving override), one with the greedy override
(`CHATDISTILL_SERVING__DECODING__*` = 0 / 1.0 / 0). `bench/serving.py` cannot show this: its
servers get a fresh environment, so decoding overrides set in the caller's shell never reach
them. Each load level drives both in turn with `serving.closed_loop`, alternating which goes
first on each repeat so that drift in a shared machine's load falls on both. Figures: replies/s,
tokens/s, latency per arm and level, and the ratios controls/greedy. Replies/s also moves with
reply length (the controls change what is said), so tokens/s is the per-step cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving import api_key, closed_loop, server_env
from tests.live.server import running_server

GREEDY = {
    "CHATDISTILL_SERVING__DECODING__NO_REPEAT_NGRAM": "0",
    "CHATDISTILL_SERVING__DECODING__REPETITION_PENALTY": "1.0",
    "CHATDISTILL_SERVING__DECODING__MIN_NEW_TOKENS": "0",
}
ARMS = {"controls": {}, "greedy": GREEDY}


def drive(args: argparse.Namespace, data_dir: Path, key: str) -> list[dict[str, Any]]:
    """Every (repeat, level, arm) run; arms alternate order between repeats."""
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        bases = {
            arm: stack.enter_context(
                running_server(server_env(args, data_dir, args.mode, args.precision) | extra)
            )
            for arm, extra in ARMS.items()
        }
        for repeat in range(args.repeats):
            order = list(ARMS) if repeat % 2 == 0 else list(reversed(ARMS))
            for clients in args.clients:
                for arm in order:
                    row = asyncio.run(closed_loop(bases[arm], key, clients, args.duration, None))
                    row |= {"arm": arm, "repeat": repeat}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]], clients: list[int]) -> dict[str, Any]:
    """Per level and arm: replies/s and tokens/s over all repeats, and controls/greedy."""
    out: dict[str, Any] = {}
    for n in clients:
        per_arm = {}
        for arm in ARMS:
            mine = [r for r in rows if r["clients"] == n and r["arm"] == arm]
            per_arm[arm] = {
                "replies_per_s": round(sum(r["replies_per_s"] for r in mine) / len(mine), 2),
                "tokens_per_s": round(sum(r["tokens_per_s"] for r in mine) / len(mine), 1),
                "tokens_per_reply": round(
                    sum(r["tokens_per_s"] for r in mine)
                    / max(sum(r["replies_per_s"] for r in mine), 1e-9),
                    1,
                ),
                "p50_ms": round(sum(r["p50_ms"] for r in mine) / len(mine), 1),
                "p95_ms": round(sum(r["p95_ms"] for r in mine) / len(mine), 1),
                "errors": sum(r["errors"] for r in mine),
            }
        c, g = per_arm["controls"], per_arm["greedy"]
        out[f"@{n}"] = per_arm | {
            "replies_per_s controls/greedy": round(c["replies_per_s"] / g["replies_per_s"], 3),
            "tokens_per_s controls/greedy": round(c["tokens_per_s"] / g["tokens_per_s"], 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level and arm")
    parser.add_argument("--mode", default="continuous")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    # server_env reads these (bench/serving.py's options); fixed here.
    args.window_ms, args.latency_target_ms = 20.0, 2000.0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-decoding-") as tmp:
        key = api_key(Path(tmp))
        rows = drive(args, Path(tmp), key)
    summary = {
        "bundle": str(args.bundle), "mode": args.mode, "precision": args.precision,
        "duration_s": args.duration, "repeats": args.repeats, "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": rows, "levels": summarise(rows, args.clients),
    }  # fmt: skip
    print(json.dumps(summary["levels"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
