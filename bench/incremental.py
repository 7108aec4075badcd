"""Incremental run vs full retrain after 10% new data, and forgetting with vs without replay.

History, replayed identically in one SQLite store per variant (snapshots are deterministic, so
the first snapshot and the second's held-out split hold the same examples in every variant):
BANKING77 rows of `--intents` intents are imported -> snapshot 1 -> the champion (full run).
Then 10% new rows arrive, half of them of `--new-intents` intents the champion has
never seen -> snapshot 2 with replay fraction r:

* incremental: r = `--replay`, warm start from the champion, the teacher cache the champion's run
  filled (a copy, so the variants do not share answers);
* incremental, no replay: the same with r = 0;
* full retrain: r = 1 (every earlier training row), cold start, an empty teacher cache.

Reported per variant: wall time of the run, teacher calls (responder replies asked, i.e. cache
misses, in labelling and evaluation), intent accuracy on snapshot 2's fixed held-out split,
accuracy on the old intents (forgetting) and on the new ones.

    OMP_NUM_THREADS=1 .venv/bin/python bench/incremental.py [--per-intent 40] [--intents 8]
        [--new-intents 2] [--replay 0.3] [--reply-budget 48] [--json out.json]

The SmolLM2 responder is prepared (converted once) in the test fixture's folder by default.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.importers.records import SeedRecord  # noqa: E402
from distill_worker.data.importers.store import store_records  # noqa: E402
from distill_worker.data.snapshots import SnapshotInfo, create_snapshot  # noqa: E402
from distill_worker.data.snapshots.records import read_records  # noqa: E402
from distill_worker.pipeline import DistillRequest, DistillResult, run_distillation  # noqa: E402
from distill_worker.run_config import RunConfig  # noqa: E402
from distill_worker.teacher.cache import TeacherCache  # noqa: E402
from distill_worker.teacher.prepare import prepare_responder  # noqa: E402
from feedback import migrate  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TINY = DistillConfig(
    enc_layers=2,
    dec_layers=1,
    dec_hidden=64,
    dec_heads=2,
    dec_ffn=128,
    stage1_epochs=3,
    stage2_epochs=2,
    stage1_batch_size=16,
    stage2_batch_size=8,
    max_reply_tokens=24,
)


def banking_rows(n_intents: int, n_new: int, per_intent: int) -> tuple[list[Any], list[Any]]:
    """(base rows, new rows): `per_intent` rows of each of the first `n_intents` intents, then
    10% more rows: half more of the old intents, half of `n_new` new intents."""
    by_intent: dict[str, list[str]] = {}
    with (DATA / "banking77" / "train.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_intent.setdefault(row["category"], []).append(row["text"])
    names = sorted(by_intent)[: n_intents + n_new]
    old, new = names[:n_intents], names[n_intents:]
    base = [(t, i) for i in old for t in by_intent[i][:per_intent]]
    extra_total = max(len(base) // 10, 2 * n_new)
    per_old = max(1, extra_total // 2 // n_intents)
    per_new = max(3, extra_total // 2 // max(n_new, 1))
    added = [(t, i) for i in old for t in by_intent[i][per_intent : per_intent + per_old]]
    added += [(t, i) for i in new for t in by_intent[i][:per_new]]
    return base, added


def import_rows(session: Session, rows: list[tuple[str, str]], tag: str) -> None:
    records = [SeedRecord(text=text, intent=intent) for text, intent in rows]
    store_records(session, "banking77", f"bench-{tag}", records)


def history(
    work: Path, name: str, base: list[Any], added: list[Any], replay: float
) -> tuple[SnapshotInfo, SnapshotInfo]:
    engine = create_engine(f"sqlite:///{work / f'{name}.db'}")
    migrate.upgrade(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        import_rows(session, base, "base")
    with factory.begin() as session:
        first = create_snapshot(session, work / "snapshots", run_id=None)
    with factory.begin() as session:
        import_rows(session, added, "added")
    with factory.begin() as session:
        second = create_snapshot(session, work / "snapshots", run_id=None, replay_fraction=replay)
    engine.dispose()
    return first, second


def run(
    work: Path,
    name: str,
    responder: Path,
    snapshot: SnapshotInfo,
    cache_file: Path,
    args: argparse.Namespace,
    warm: Path | None = None,
) -> tuple[DistillResult, float]:
    cache = TeacherCache.in_sqlite_file(cache_file)
    started = time.monotonic()
    try:
        result = run_distillation(
            DistillRequest(
                out_dir=work / f"bundle_{name}",
                work_dir=work / f"run_{name}",
                responder_dir=responder,
                config=RunConfig(
                    distill=TINY,
                    reply_budget=args.reply_budget,
                    eval_replies=4,
                    teacher_epochs=2,
                    int8=False,
                ),
                teacher_cache=cache,
                snapshot_dir=snapshot.path,
                warm_start_bundle=warm,
            ),
            log=lambda line: (
                print(f"  [{name}] {line.strip()}", flush=True) if args.verbose else None
            ),
        )
    finally:
        cache.close()
    return result, time.monotonic() - started


def summary(result: DistillResult, seconds: float, old: set[str], new: set[str]) -> dict[str, Any]:
    m = result.metrics
    per = m["intent"]["per_intent_accuracy"]
    held = m["dev_rows"]

    def mean(names: set[str]) -> float | None:
        values = [per[n] for n in names if n in per]
        return round(sum(values) / len(values), 4) if values else None

    calls = m["teacher_cache"]["misses"] + m["teacher_cache_eval"]["misses"]
    return {
        "wall_seconds": round(seconds, 1),
        "teacher_calls": calls,
        "train_rows": m["train_rows"],
        "heldout_rows": held,
        "heldout_accuracy": round(m["intent"]["accuracy"], 4),
        "old_intents_accuracy": mean(old),
        "new_intents_accuracy": mean(new),
    }


def _keys(path: Path) -> frozenset[str]:
    return frozenset(r.key for r in read_records(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intents", type=int, default=8)
    parser.add_argument("--new-intents", type=int, default=2)
    parser.add_argument("--per-intent", type=int, default=40)
    parser.add_argument("--replay", type=float, default=0.3)
    parser.add_argument("--reply-budget", type=int, default=48)
    parser.add_argument("--responder-dir", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    responder = prepare_responder(
        args.responder_dir or Path(tempfile.gettempdir()) / "chatdistill-test-smollm2"
    )
    base, added = banking_rows(args.intents, args.new_intents, args.per_intent)
    old = {i for _, i in base}
    new = {i for _, i in added} - old
    print(
        f"base {len(base)} rows / {len(old)} intents; +{len(added)} rows ({len(new)} new intents)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        work = Path(tmp)
        snaps = {
            name: history(work, name, base, added, replay)
            for name, replay in (("incremental", args.replay), ("no_replay", 0.0), ("full", 1.0))
        }
        first = snaps["incremental"][0]
        # Same examples and split in every variant (files differ only in the seed row ids).
        assert len({_keys(s[0].train_path) for s in snaps.values()}) == 1
        champion, champion_s = run(work, "champion", responder, first, work / "cache.db", args)
        results: dict[str, Any] = {"champion": summary(champion, champion_s, old, new)}
        print("champion", json.dumps(results["champion"]), flush=True)
        for name in ("incremental", "no_replay", "full"):
            cache_file = work / f"cache_{name}.db"
            if name != "full":  # incremental runs keep the champion run's teacher answers
                shutil.copyfile(work / "cache.db", cache_file)
            warm = champion.bundle_dir if name != "full" else None
            result, seconds = run(work, name, responder, snaps[name][1], cache_file, args, warm)
            results[name] = summary(result, seconds, old, new)
            results[name]["snapshot_counts"] = snaps[name][1].counts
            print(name, json.dumps(results[name]), flush=True)
        heldouts = {_keys(s[1].heldout_path) for s in snaps.values()}
        results["same_heldout_split"] = len(heldouts) == 1
        inc, full = results["incremental"], results["full"]
        results["ratios_incremental_vs_full"] = {
            "wall_time": round(inc["wall_seconds"] / full["wall_seconds"], 3),
            "teacher_calls": round(inc["teacher_calls"] / max(full["teacher_calls"], 1), 3),
            "heldout_accuracy_delta": round(inc["heldout_accuracy"] - full["heldout_accuracy"], 4),
        }
        print(json.dumps(results["ratios_incremental_vs_full"]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
