"""Building and reading snapshot folders: `create_snapshot` and `load_snapshot`.

What goes in (see `feedback.repositories.snapshots` for how feedback is read):

* New feedback: customer turns whose text, reply, labels or ratings changed since the previous
  snapshot's `feedback_until`. Intent label: the newest operator label wins; without one, the
  intent the student predicted counts only at `intent_confidence >= min_confidence` (default
  0.9), else the turn is unlabelled (it still serves intent KD from the encoder teacher and,
  with a reply, stage 2). Reply: an operator correction becomes the reference reply (the reply
  it replaced becomes a reward-head negative); a human agent's reply after a handoff is a
  reference (source "agent"; the assistant reply before it, if any, becomes a negative the same
  way); a rated student reply is kept with its rating as the reward; an unrated student reply is
  not a target.
  Turns an operator excluded from training are dropped, and so are their records carried from
  earlier snapshots.
* New seed examples: those imported since the previous snapshot (all of them the first time).
* Replay: `replay_fraction` of each intent of everything earlier snapshots trained on.
* Held-out: the previous held-out set whole, plus new keys by the rule in `split`.

Text is PII-redacted when it is stored; records are passed through `redact_text` once more on
the way into the files (it leaves redacted text unchanged), so a snapshot never holds more than
the store does.

Crash safety: files are written to a staging folder, named by their content hash, moved into
place with one rename, and only then is the row inserted (in the caller's transaction). A crash
leaves at most an unreferenced, complete folder that the next identical snapshot reuses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from distill_worker.data.loaders import Utterance
from distill_worker.data.snapshots.records import SnapshotError, SnapshotRecord, read_records
from distill_worker.data.snapshots.sources import from_seed, from_turn
from distill_worker.data.snapshots.split import (
    assign_heldout,
    balance_report,
    merge,
    sample_replay,
)
from feedback.models import Snapshot, utcnow
from feedback.repositories.snapshots import SnapshotRepository

TRAIN, HELDOUT, REPORT = "train.jsonl", "heldout.jsonl", "report.json"


@dataclass(frozen=True)
class SnapshotInfo:
    id: uuid.UUID
    run_id: uuid.UUID | None
    content_hash: str
    path: Path  # the snapshot folder
    counts: dict[str, Any]
    created: bool  # False when the run already had this snapshot

    @property
    def train_path(self) -> Path:
        return self.path / TRAIN

    @property
    def heldout_path(self) -> Path:
        return self.path / HELDOUT

    @property
    def report_path(self) -> Path:
        return self.path / REPORT


def create_snapshot(
    session: Session,
    snapshots_dir: Path,
    *,
    run_id: uuid.UUID | None,
    replay_fraction: float = 0.2,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    min_confidence: float = 0.9,
    max_context_turns: int = 8,
    settle_seconds: float = 0.0,
) -> SnapshotInfo:
    """Freeze the training set for a run (see the module docstring). Idempotent per run_id.

    Feedback is taken up to now minus `settle_seconds`: rows stamped just before a snapshot
    but committed just after it would otherwise be missed by this snapshot and the next one; a
    deployment with concurrent writers passes the longest write transaction it expects."""
    if not 0.0 <= replay_fraction <= 1.0:
        raise SnapshotError(f"replay_fraction must be in [0, 1], got {replay_fraction}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise SnapshotError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    repo = SnapshotRepository(session)
    if run_id is not None and (existing := repo.for_run(run_id)) is not None:
        return _info(existing, created=False)

    until = utcnow() - dt.timedelta(seconds=settle_seconds)
    earlier = repo.all()
    latest = earlier[-1] if earlier else None
    after = latest.feedback_until if latest else None
    pool, _ = merge(r for s in earlier for r in read_records(_folder(s) / TRAIN))
    carried = read_records(_folder(latest) / HELDOUT) if latest else []

    turns = repo.feedback_turns(after=after, until=until, max_context_turns=max_context_turns)
    excluded = {str(t.message_id) for t in turns if t.excluded}
    feedback = [from_turn(t, min_confidence) for t in turns if not t.excluded]
    seeds = [from_seed(s) for s in repo.seed_rows(after=after, until=until)]
    new, merged_away = merge([*seeds, *feedback])

    def kept(r: SnapshotRecord) -> bool:
        return r.source_id not in excluded

    heldout_by_key = {r.key: r for r in carried if kept(r)}
    seen_keys = set(pool) | {r.key for r in carried}
    for key, record in new.items():  # newer labels/replies of held-out turns replace the old
        if key in heldout_by_key:
            heldout_by_key[key] = record
    fresh = [r for k, r in new.items() if k not in seen_keys]
    seen_per_class: Counter[str | None] = Counter(
        r.intent for r in [*pool.values(), *heldout_by_key.values()]
    )
    held_per_class: Counter[str | None] = Counter(r.intent for r in heldout_by_key.values())
    added = assign_heldout(fresh, seen_per_class, held_per_class, heldout_fraction)
    heldout_by_key.update({k: new[k] for k in added})
    heldout = sorted(heldout_by_key.values(), key=lambda r: r.key)

    train_new = [r for k, r in new.items() if k not in heldout_by_key]
    replay_pool = [
        r for k, r in pool.items() if k not in new and k not in heldout_by_key and kept(r)
    ]
    replay = sample_replay(replay_pool, replay_fraction, seed)
    train = sorted([*train_new, *replay], key=lambda r: r.key)
    if not train:
        raise SnapshotError(
            "nothing to train on: no new feedback, no seed corpora and no earlier snapshot; "
            "import a seed corpus (chatdistill import ...) or wait for rated conversations"
        )
    counts = {
        "train": len(train),
        "heldout": len(heldout),
        "new_feedback": sum(1 for r in train_new if r.origin == "feedback"),
        "new_seed": sum(1 for r in train_new if r.origin == "seed"),
        "replay": len(replay),
        "replay_pool": len(replay_pool),
        "heldout_carried": len(heldout) - len(added),
        "heldout_added": len(added),
        "excluded": len(excluded),
        "duplicates_merged": merged_away,
        "train_labelled": sum(1 for r in train if r.intent),
        "train_replies": sum(1 for r in train if r.reply),
        "train_rated": sum(1 for r in train if r.reward is not None),
        "train_with_context": sum(1 for r in train if r.context),
    }
    params = {
        "replay_fraction": replay_fraction,
        "heldout_fraction": heldout_fraction,
        "seed": seed,
        "min_confidence": min_confidence,
        "max_context_turns": max_context_turns,
    }
    report = {"counts": counts, "params": params, "balance": balance_report(train, heldout)}
    folder = _write_folder(snapshots_dir, train, heldout, report)
    row = Snapshot(
        run_id=run_id,
        parent_id=latest.id if latest else None,
        content_hash=folder.name,
        path=str(folder),
        feedback_until=until,
        params=params,
        counts=counts,
    )
    try:
        repo.add(row)
    except IntegrityError:  # a concurrent call for the same run won: return its snapshot
        winner = repo.for_run(run_id) if run_id is not None else None
        if winner is None:
            raise
        return _info(winner, created=False)
    return _info(row, created=True)


def load_snapshot(path: Path) -> tuple[list[Utterance], list[Utterance]]:
    """(train, held-out) utterances of a snapshot folder, after checking its content hash."""
    path = Path(path)
    try:
        train_bytes, heldout_bytes = (path / TRAIN).read_bytes(), (path / HELDOUT).read_bytes()
        report = json.loads((path / REPORT).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: not a readable snapshot folder ({exc})") from exc
    core = {k: v for k, v in report.items() if k != "content_hash"}
    actual = _content_hash(train_bytes, heldout_bytes, core)
    if actual != report.get("content_hash") or actual != path.name:
        raise SnapshotError(
            f"{path}: content hash {actual[:12]}... does not match the folder name or report; "
            "the snapshot was changed after it was written; rebuild it"
        )
    train = [r.utterance() for r in read_records(path / TRAIN)]
    heldout = [r.utterance() for r in read_records(path / HELDOUT)]
    return train, heldout


def _content_hash(train: bytes, heldout: bytes, report_core: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for part in (train, heldout, json.dumps(report_core, sort_keys=True).encode("utf-8")):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _write_folder(
    snapshots_dir: Path,
    train: Sequence[SnapshotRecord],
    heldout: Sequence[SnapshotRecord],
    report: dict[str, Any],
) -> Path:
    snapshots_dir.mkdir(parents=True, exist_ok=True)
    train_bytes = "".join(r.to_json() + "\n" for r in train).encode("utf-8")
    heldout_bytes = "".join(r.to_json() + "\n" for r in heldout).encode("utf-8")
    content_hash = _content_hash(train_bytes, heldout_bytes, report)
    final = snapshots_dir / content_hash
    if final.is_dir():
        return final  # the same content, written before (by this or an earlier run)
    staging = snapshots_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for name, data in (
            (TRAIN, train_bytes),
            (HELDOUT, heldout_bytes),
            (REPORT, json.dumps({**report, "content_hash": content_hash}, indent=2).encode()),
        ):
            with (staging / name).open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def _folder(snapshot: Snapshot | None) -> Path:
    assert snapshot is not None
    folder = Path(snapshot.path)
    if not folder.is_dir():
        raise SnapshotError(
            f"snapshot {snapshot.id} folder {folder} is missing; restore the artifact store "
            "(held-out and replay data come from earlier snapshots)"
        )
    return folder


def _info(row: Snapshot, *, created: bool) -> SnapshotInfo:
    return SnapshotInfo(
        id=row.id,
        run_id=row.run_id,
        content_hash=row.content_hash,
        path=Path(row.path),
        counts=dict(row.counts),
        created=created,
    )
