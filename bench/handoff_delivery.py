"""Delivery latency of a human agent's reply: from the operator's send to the widget's stream.

    .venv/bin/python bench/handoff_delivery.py [--messages 100]

Real `chatdistill serve` processes on loopback. One customer asks for a human and keeps the
widget's event stream (`GET /v1/widget/conversations/{id}/events`) open; an admin claims the
conversation and sends `--messages` replies one after another (`POST
/v1/operator/conversations/{id}/messages`). Each latency runs from just before the send to the
moment the stream's reader thread has the message. Two set-ups, measured side by side:

    sqlite-1proc     the embedded default: SQLite, one process, no Redis (the in-process bus)
    pg-redis-2proc   PostgreSQL and Redis, the operator on process A, the widget on process B
                     (Redis pub/sub carries the wake-up; the poll fallback is set to 60 s so
                     it cannot be what delivered)

Prints one JSON line per set-up (p50/p95/max of delivery and of the send's own round trip, in
ms) and the ratio line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import REDIS_URL, create_database, drop_database
from tests.fixtures.sse import Stream
from tests.live.server import running_server
from tests.live.test_handoff_live import _admin, _env, _waiting_customer


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(operator_base: str, widget_base: str, env: dict[str, str], n: int) -> dict[str, Any]:
    admin = _admin(operator_base, env)
    cid, widget = _waiting_customer(operator_base)
    stream = Stream(f"{widget_base}/v1/widget/conversations/{cid}/events", widget)
    delivery, send = [], []
    try:
        assert stream.next("status")["status"] == 200
        stream.next("message")  # the handoff notice
        ops = f"{operator_base}/v1/operator/conversations/{cid}"
        with httpx.Client(timeout=10) as client:
            assert client.post(f"{ops}/claim", headers=admin).status_code == 200
            stream.next("message")  # "An agent joined"
            for i in range(n):
                text = f"reply {i}"
                started = time.perf_counter()
                response = client.post(f"{ops}/messages", json={"text": text}, headers=admin)
                sent = time.perf_counter()
                assert response.status_code == 201, response.text
                event = stream.next("message", timeout=15)
                arrived = time.perf_counter()
                assert event["data"]["text"] == text, event
                delivery.append((arrived - started) * 1000)
                send.append((sent - started) * 1000)
    finally:
        stream.close()
    return {
        "messages": n,
        "delivery_p50_ms": round(statistics.median(delivery), 1),
        "delivery_p95_ms": round(_percentile(delivery, 0.95), 1),
        "delivery_max_ms": round(max(delivery), 1),
        "send_p50_ms": round(statistics.median(send), 1),
        "send_p95_ms": round(_percentile(send, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    rate_limits = {"CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": "100000"}
    with TemporaryDirectory() as tmp:
        env = {**_env(Path(tmp) / "sqlite"), **rate_limits}
        env.pop("CHATDISTILL_LIVE__POLL_INTERVAL_S")  # the embedded default's own setting
        with running_server(env) as base:
            results["sqlite-1proc"] = measure(base, base, env, args.messages)

        name = f"chatdistill_bench_handoff_{uuid.uuid4().hex[:10]}"
        url = create_database(name)
        try:
            env = {
                **_env(Path(tmp) / "pg"),
                **rate_limits,
                "CHATDISTILL_DATABASE__URL": url,
                "CHATDISTILL_REDIS__URL": REDIS_URL,
                "CHATDISTILL_REDIS__KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
            }
            with ExitStack() as stack:
                a = stack.enter_context(running_server(env, "--migrate"))
                b = stack.enter_context(running_server(env))
                results["pg-redis-2proc"] = measure(a, b, env, args.messages)
        finally:
            drop_database(name)
    for setup, figures in results.items():
        print(json.dumps({"setup": setup, **figures}))
    one, two = results["sqlite-1proc"], results["pg-redis-2proc"]
    print(
        "ratio pg-redis-2proc / sqlite-1proc: delivery p50 "
        f"{two['delivery_p50_ms'] / one['delivery_p50_ms']:.2f}x, p95 "
        f"{two['delivery_p95_ms'] / one['delivery_p95_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
