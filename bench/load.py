"""Customers all at once against a real server, on the embedded SQLite file and on PostgreSQL.

    .venv/bin/python bench/load.py [--json OUT] [--databases sqlite postgresql]
        [--burst-conversations 2] [--burst 25] [--crowd 60]

The tiny test student serves (built in a temporary folder; the point is the store and the
request path, not the model). Per database, in one run: `--burst-conversations` conversations
each get `--burst` simultaneous messages, and `--crowd` customers send one message each in new
conversations, all at the same moment; while they are in flight an operator, in a process of
its own (as an operator's browser is), asks for `/v1/operator/me` and for the metrics summary
three times, 0.3 s apart. Figures: status counts, server errors, messages lost (answered 201
but not stored, or stored twice), customer p50/p95 latency and the operator's slowest answer,
side by side for the two databases. The client shares the 2 cores with the server: compare the
two columns, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedback.models import MessageRole
from tests.conftest import create_database, drop_database
from tests.fixtures.tiny_bundle import TOY, build_tiny_bundle
from tests.live.test_load_and_handoff import operator_token, post, serve_tiny, start, stored

# The operator's side, run in its own interpreter: it waits for "go" on stdin, then times its
# requests and prints them as one JSON line.
OPERATOR_SCRIPT = """
import json, sys, time, httpx
base, token = sys.argv[1], sys.argv[2]
headers = {"Authorization": "Bearer " + token}
with httpx.Client(timeout=60) as client:
    client.get(base + "/healthz")  # connection and imports warm before the load starts
    sys.stdin.readline()
    timings = []
    for _ in range(3):
        time.sleep(0.3)
        for path in ("/v1/operator/me", "/v1/operator/metrics/summary"):
            began = time.perf_counter()
            status = client.get(base + path, headers=headers).status_code
            timings.append([path, status, (time.perf_counter() - began) * 1000.0])
print(json.dumps(timings), flush=True)
"""


def start_operator(base: str, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OPERATOR_SCRIPT, base, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def operator_figures(operator: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = operator.communicate(timeout=180)
    timings = json.loads(out.strip().splitlines()[-1])
    figures: dict[str, Any] = {}
    for name, path in (
        ("operator_me", "/v1/operator/me"),
        ("operator_summary", "/v1/operator/metrics/summary"),
    ):
        mine = [t for t in timings if t[0] == path]
        figures[name] = {
            "statuses": sorted({t[1] for t in mine}),
            "max_ms": round(max(t[2] for t in mine), 1),
            "ms": [round(t[2], 1) for t in mine],
        }
    return figures


def run_load(base: str, db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    token = operator_token(db_url)
    texts = TOY["track_order"][0]
    with httpx.Client(timeout=30) as client:
        bursts = [start(client, base) for _ in range(args.burst_conversations)]
        crowd = [start(client, base) for _ in range(args.crowd)]
    jobs = [(c, h, texts[i % len(texts)]) for c, h in bursts for i in range(args.burst)]
    jobs += [(c, h, texts[0]) for c, h in crowd]
    gate = threading.Barrier(len(jobs) + 1)
    latencies: list[float] = []

    def customer(job: tuple[str, dict[str, str], str]) -> int:
        gate.wait()
        began = time.perf_counter()
        status = post(base, *job).status_code
        latencies.append((time.perf_counter() - began) * 1000.0)
        return status

    operator = start_operator(base, token)
    time.sleep(1.0)  # its interpreter is up and its connection open
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(customer, job) for job in jobs]
        gate.wait()
        assert operator.stdin is not None
        operator.stdin.write("go\n")
        operator.stdin.flush()
        statuses = [f.result() for f in futures]
    operator_side = operator_figures(operator)
    accepted: dict[str, int] = {}
    for (cid, _, _), status in zip(jobs, statuses, strict=True):
        if status == 201:
            accepted[cid] = accepted.get(cid, 0) + 1
    lost = 0
    for cid in {c for c, _, _ in jobs}:
        customer_rows = [m for m in stored(db_url, cid) if m.role == MessageRole.CUSTOMER.value]
        lost += abs(accepted.get(cid, 0) - len(customer_rows))
    ordered = sorted(latencies)
    return {
        "requests": len(jobs),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "server_errors": sum(s >= 500 for s in statuses),
        "lost_messages": lost,
        "customer_p50_ms": round(statistics.median(ordered), 1),
        "customer_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        **operator_side,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--burst-conversations", type=int, default=2)
    parser.add_argument("--burst", type=int, default=25)
    parser.add_argument("--crowd", type=int, default=60)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chatdistill-load-") as tmp:
        root = Path(tmp)
        (root / "tiny").mkdir()
        bundle = build_tiny_bundle(root / "tiny")
        for name in args.databases:
            data = root / name
            data.mkdir()
            db_name = f"chatdistill_loadbench_{uuid.uuid4().hex[:10]}"
            url = f"sqlite:///{data / 'store.db'}" if name == "sqlite" else create_database(db_name)
            try:
                with serve_tiny(data, bundle, url) as base:
                    results[name] = run_load(base, url, args)
            finally:
                if name != "sqlite":
                    drop_database(db_name)
            print(name, json.dumps(results[name]), flush=True)
    if len(results) == 2:
        a, b = results["sqlite"], results["postgresql"]
        results["ratio_sqlite_over_postgresql"] = {
            "customer_p95": round(a["customer_p95_ms"] / b["customer_p95_ms"], 2),
            "operator_me_max": round(a["operator_me"]["max_ms"] / b["operator_me"]["max_ms"], 2),
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
