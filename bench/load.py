"""Customers all at once against a real server, on the embedded SQLite file and on PostgreSQL.

    .venv/bin/python bench/load.py [--json OUT] [--databases sqlite postgresql]
        [--burst-conversations 2] [--burst 25] [--crowd 60]

The tiny test student serves (built in a temporary folder; the point is the store and the
request path, not the model). Per database, in one run: `--burst-conversations` conversations
each get `--burst` simultaneous messages, and `--crowd` customers send one message each in new
conversations, all at the same moment; while they are in flight an operator asks for
`/v1/operator/me` and for the metrics summary. Figures: status counts, server errors, messages
lost (answered 201 but not stored, or stored twice), customer p50/p95 latency and the
operator's latency, side by side for the two databases. The client shares the 2 cores with the
server: compare the two columns, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedback.db import session_scope
from feedback.models import MessageRole, OperatorRole
from feedback.repositories.operators import OperatorRepository
from tests.conftest import create_database, drop_database
from tests.distill_worker.test_export import TOY, build_tiny_bundle
from tests.live.test_load_and_handoff import post, serve_tiny, start, stored


def operator_token(db_url: str) -> str:
    engine = create_engine(db_url)
    try:
        with session_scope(sessionmaker(bind=engine, expire_on_commit=False)) as session:
            repo = OperatorRepository(session)
            operator = repo.create(
                email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
                name="Bench Operator",
                password="a long enough bench password",  # noqa: S106 - a throwaway local account
                role=OperatorRole.OPERATOR,
            )
            return repo.issue_session(operator, ttl=dt.timedelta(hours=1)).token
    finally:
        engine.dispose()


def timed_get(url: str, token: str) -> tuple[int, float]:
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        status = client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code
    return status, (time.perf_counter() - started) * 1000.0


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

    operator: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=len(jobs) + 2) as pool:
        futures = [pool.submit(customer, job) for job in jobs]
        gate.wait()
        time.sleep(0.2)  # the customers' requests are in flight
        operator["me"] = timed_get(f"{base}/v1/operator/me", token)
        operator["summary"] = timed_get(f"{base}/v1/operator/metrics/summary", token)
        statuses = [f.result() for f in futures]
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
        "operator_me": {"status": operator["me"][0], "ms": round(operator["me"][1], 1)},
        "operator_summary": {
            "status": operator["summary"][0],
            "ms": round(operator["summary"][1], 1),
        },
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
            "operator_me": round(a["operator_me"]["ms"] / b["operator_me"]["ms"], 2),
        }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
