"""The corpora a run reads beside its labelled rows: out-of-domain messages, the negatives its
handoff threshold is calibrated on (never training rows), and unlabelled messages, KD-only rows
for stage 1. Both leave out what the run's own data already has."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from distill_worker.data.demo_corpus import OOS
from distill_worker.data.loaders import Utterance, load_utterances
from distill_worker.data.ood_corpus import (
    drop_near,
    in_domain_cutoff,
    message_key,
    nearest_cosine,
)
from distill_worker.teacher.encoder import load_encoder, locate_minilm

Log = Callable[[str], None]

OOD_ROWS = 2000  # out-of-domain negatives kept for calibration (a seeded sample)


def ood_sample(path: str, seed: int, own: Iterable[Utterance] = ()) -> tuple[list[Utterance], int]:
    """The corpus file's rows, labels dropped, less those whose text one of the customer's own
    rows (`own`) has: all of them, or a seeded sample of OOD_ROWS; and how many were the
    customer's (a corpus built from the very public set a run trains on holds many of them)."""
    mine = {message_key(r.text) for r in own}
    rows = [Utterance(text=r.text, context=r.context) for r in load_utterances(Path(path))]
    kept = [r for r in rows if message_key(r.text) not in mine]
    theirs = len(rows) - len(kept)
    if len(kept) > OOD_ROWS:
        kept = random.Random(seed).sample(kept, OOD_ROWS)
    return kept, theirs


MIN_CUTOFF_ROWS = 20  # unseen in-scope rows needed to set the embedding cutoff


def ood_negatives(
    path: str | None,
    train: list[Utterance],
    held_out: list[Utterance],
    seed: int,
    log: Log,
    *,
    other: Sequence[Utterance] = (),
) -> tuple[list[Utterance], dict[str, Any]]:
    """The out-of-domain negatives: the file's rows, less those about the customer's subjects,
    and how many each filter dropped. A row goes when the customer's data has its text (`train`,
    `held_out` or `other`: the report rows, the unlabelled KD rows), when its words are close
    to an in-scope train row (`drop_near`), or when its sentence embedding (the pretrained
    all-MiniLM-L6-v2) is as close to one as the unseen in-scope `held_out` rows are
    (`in_domain_cutoff`)."""
    if path is None:
        return [], {}
    rows, in_data = ood_sample(path, seed, [*train, *held_out, *other])
    in_scope = [r for r in train if r.intent != OOS]
    unseen = [r for r in held_out if r.intent and r.intent != OOS]
    kept = drop_near(rows, in_scope)
    report: dict[str, Any] = {
        "file": Path(path).name,
        "in_data": in_data,
        "rows": len(rows),
        "near_words": len(rows) - len(kept),
    }
    if kept and in_scope and len(unseen) >= MIN_CUTOFF_ROWS:
        encoder = load_encoder(locate_minilm(), threads=torch.get_num_threads())

        def features(texts: list[Utterance]) -> Any:
            return encoder.features([r.text for r in texts], batch_size=128).numpy()

        reference = features(in_scope)
        cutoff = in_domain_cutoff(features(unseen), reference)
        close = nearest_cosine(features(kept), reference)
        before = len(kept)
        kept = [r for r, c in zip(kept, close, strict=True) if c < cutoff]
        report |= {"near_meaning": before - len(kept), "cutoff": round(cutoff, 4)}
    report["kept"] = len(kept)
    drops = [f"{in_data} in the run's own data (before the sample)"] if in_data else []
    drops.append(f"{report['near_words']} close in words")
    if "cutoff" in report:
        drops.append(f"{report['near_meaning']} in meaning (cosine >= {report['cutoff']:.3f})")
    log(
        f"      out-of-domain negatives: {len(kept)} of {len(rows)} rows of {path} kept; "
        f"dropped as the customer's own subjects: {', '.join(drops)}"
    )
    return kept, report


UNLABELLED_ROWS = 10_000  # unlabelled messages kept for stage 1 KD (a seeded sample)


def unlabelled_messages(
    path: str | None,
    train: list[Utterance],
    held_out: list[Utterance],
    seed: int,
    log: Log,
) -> list[Utterance]:
    """The file's messages with their labels dropped, less those a train row already has and
    those equal or close to a held-out row (the figures a run reports stay on unseen text)."""
    if path is None:
        return []
    seen = {message_key(r.text) for r in [*train, *held_out]}
    rows: list[Utterance] = []
    for r in load_utterances(Path(path)):
        key = message_key(r.text)
        if key and key not in seen:
            seen.add(key)
            rows.append(Utterance(text=r.text, context=r.context))
    if len(rows) > UNLABELLED_ROWS:
        rows = random.Random(seed).sample(rows, UNLABELLED_ROWS)
    kept = drop_near(rows, held_out)
    log(
        f"      unlabelled messages for stage 1 KD: {len(kept)} of {len(rows)} new rows of "
        f"{path} (the rest are close to a held-out row)"
    )
    return kept
