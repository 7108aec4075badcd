"""Load on the rating endpoint: a real `chatdistill serve` on a real PostgreSQL, driven by wrk.

    .venv/bin/python bench/rating_load.py [--connections 16] [--duration 20] [--workers 1 2]

Needs `wrk` (Debian package `wrk`). Seeds one conversation with an assistant reply per target,
then every wrk connection keeps POSTing thumbs ratings to random targets (closed loop: a new
request as soon as the previous answer arrives). Rate limits are switched off for the run; they
are not what is measured. Prints one JSON line per server configuration and a ratio line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feedback.db import session_scope
from feedback.models import MessageRole, Rating
from feedback.repositories.conversations import ConversationRepository
from tests.conftest import create_database, drop_database
from tests.live.server import running_server

LUA = """
local targets = {%s}
init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) end
request = function()
  local t = targets[math.random(#targets)]
  return wrk.format("POST", t[1], {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. t[2]}, '{"thumbs": "up", "csat": 4}')
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
              + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_s": %%.3f, "errors": %%d, "p50_ms": %%.2f, '
    .. '"p95_ms": %%.2f, "p99_ms": %%.2f, "max_ms": %%.2f}\\n',
    summary.requests, summary.duration / 1e6, bad, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def seed(base: str, db_url: str, targets: int) -> list[tuple[str, str]]:
    """Conversations with one assistant reply each; returns (rating path, token) pairs."""
    engine = create_engine(db_url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    pairs = []
    with httpx.Client(base_url=base) as client:
        for _ in range(targets):
            started = client.post("/v1/widget/conversations", json={}).json()
            cid = uuid.UUID(started["conversation_id"])
            with session_scope(factory) as session:
                repo = ConversationRepository(session)
                reply = repo.add_message(
                    repo.get(cid), role=MessageRole.ASSISTANT, text="Your order ships today."
                )
            path = f"/v1/widget/conversations/{cid}/messages/{reply.id}/rating"
            pairs.append((path, started["token"]))
    engine.dispose()
    return pairs


def run_wrk(base: str, pairs: list[tuple[str, str]], connections: int, duration: int) -> dict:
    threads = min(2, connections)
    entries = ",".join(f'{{"{p}", "{t}"}}' for p, t in pairs)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % entries)
    # Warm up (connection pools, first queries), then measure.
    subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", "3s", "-s", script.name, base],
        capture_output=True,
        check=True,
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "-s",
            script.name,
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=20, help="seconds per configuration")
    parser.add_argument("--targets", type=int, default=64, help="rated replies to spread over")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    results = {}
    for workers in args.workers:
        name = f"chatdistill_bench_{uuid.uuid4().hex[:10]}"
        url = create_database(name)
        env = {
            "CHATDISTILL_DATA_DIR": tempfile.mkdtemp(),
            "CHATDISTILL_DATABASE__URL": url,
            "CHATDISTILL_AUTH__SECRET_KEY": "bench-secret-key-0123456789abcdef",
            "CHATDISTILL_RATE_LIMIT__ENABLED": "false",
            "CHATDISTILL_LOG_LEVEL": "WARNING",
        }
        try:
            with running_server(env, "--migrate", "--workers", str(workers)) as base:
                pairs = seed(base, url, args.targets)
                result = run_wrk(base, pairs, args.connections, args.duration)
            engine = create_engine(url)
            with engine.connect() as conn:
                result["rating_rows"] = conn.scalar(select(func.count(Rating.id)))
            engine.dispose()
        finally:
            drop_database(name)
        result.update(server_workers=workers, connections=args.connections)
        results[workers] = result
        print(json.dumps(result), flush=True)
    if len(results) > 1:
        first, *rest = list(results)
        for other in rest:
            ratio = results[other]["requests_per_s"] / results[first]["requests_per_s"]
            p95 = results[other]["p95_ms"] / results[first]["p95_ms"]
            print(f"{other} vs {first} server processes: throughput x{ratio:.2f}, p95 x{p95:.2f}")


if __name__ == "__main__":
    main()
