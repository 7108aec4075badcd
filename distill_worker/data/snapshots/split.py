"""The pure part of a snapshot: dedup, the held-out split that never moves, replay sampling,
and the class-balance report. No database, no files: lists of records in, lists out.

Held-out rule. A key held out once stays held out (the previous snapshot's held-out set is
carried over whole); a key that any earlier snapshot trained on is never held out (the champion
saw it). Only keys no snapshot has seen are assigned, per intent, so that each intent's held-out
share over everything seen so far stays near `fraction`: the new keys with the smallest stable
hash (sha256 of the key, no seed) are held out. Champion and candidate are therefore compared on
the same examples, and the split does not depend on the order or batch in which data arrived.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from distill_worker.data.snapshots.records import SnapshotRecord

SMALL_CLASS = 5  # intents with fewer train examples than this are flagged in the report


def stable_unit(key: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by the key (and salt): the same on every machine and run."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample_priority(key: str, seed: int) -> float:
    """The order in which replay and teacher prompts are drawn (smallest first). Shared, so that
    the prompts a run asked the teacher about come first in a later run's replay sample."""
    return stable_unit(key, f"sample-{seed}")


def merge(records: Iterable[SnapshotRecord]) -> tuple[dict[str, SnapshotRecord], int]:
    """One record per key; later records win (give them in increasing priority), and a winner
    without an intent or reply keeps the loser's. Returns the records and how many were merged
    away."""
    out: dict[str, SnapshotRecord] = {}
    merged = 0
    for record in records:
        old = out.get(record.key)
        if old is not None:
            merged += 1
            if record.intent is None and old.intent is not None:
                record = replace(record, intent=old.intent, intent_source=old.intent_source)
            if record.reply is None and old.reply is not None:
                record = replace(
                    record, reply=old.reply, reply_source=old.reply_source, reward=old.reward
                )
            if record.rejected is None and old.rejected is not None:
                record = replace(record, rejected=old.rejected)
        out[record.key] = record
    return out, merged


def assign_heldout(
    new: Sequence[SnapshotRecord],
    seen_per_class: Counter[str | None],
    heldout_per_class: Counter[str | None],
    fraction: float,
) -> set[str]:
    """Keys among `new` (keys no snapshot has seen) to hold out, stratified by intent."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {fraction}")
    by_class: dict[str | None, list[SnapshotRecord]] = defaultdict(list)
    for record in new:
        by_class[record.intent].append(record)
    chosen: set[str] = set()
    for intent, group in by_class.items():
        total = seen_per_class[intent] + len(group)
        want = round(total * fraction)
        if want == 0 and fraction > 0 and total >= 3:
            want = 1
        need = min(max(want - heldout_per_class[intent], 0), len(group))
        if len(group) - need < 1 and seen_per_class[intent] == 0:
            need = max(len(group) - 1, 0)  # keep one to train on for a brand-new intent
        group.sort(key=lambda r: stable_unit(r.key))
        chosen.update(r.key for r in group[:need])
    return chosen


def sample_replay(
    pool: Sequence[SnapshotRecord], fraction: float, seed: int
) -> list[SnapshotRecord]:
    """`fraction` of each intent of the earlier training data (at least one per intent, so no
    old intent is left out), in `sample_priority` order: the same rows for the same pool and
    seed (another seed draws another sample)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"replay_fraction must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return []
    by_class: dict[str | None, list[SnapshotRecord]] = defaultdict(list)
    for record in pool:
        by_class[record.intent].append(record)
    out: list[SnapshotRecord] = []
    for _, group in sorted(by_class.items(), key=lambda kv: kv[0] or ""):
        n = max(1, round(len(group) * fraction))
        group.sort(key=lambda r: sample_priority(r.key, seed))
        out.extend(group[:n])
    return out


def balance_report(
    train: Sequence[SnapshotRecord], heldout: Sequence[SnapshotRecord]
) -> dict[str, Any]:
    """Per-intent counts, the imbalance ratio and the intents too small to learn from."""
    train_counts = Counter(r.intent or "<unlabelled>" for r in train)
    heldout_counts = Counter(r.intent or "<unlabelled>" for r in heldout)
    labelled = {k: v for k, v in train_counts.items() if k != "<unlabelled>"}
    intents = sorted(set(train_counts) | set(heldout_counts))
    return {
        "intents": {
            name: {"train": train_counts.get(name, 0), "heldout": heldout_counts.get(name, 0)}
            for name in intents
        },
        "n_intents": len(labelled),
        "imbalance_ratio": (
            round(max(labelled.values()) / min(labelled.values()), 2) if labelled else None
        ),
        "small_intents": sorted(k for k, v in labelled.items() if v < SMALL_CLASS),
        "heldout_only_intents": sorted(set(heldout_counts) - set(train_counts)),
    }
