"""Adversarial variants of labelled customer turns: the noise real customers type.

About `fraction` of the labelled rows (at least one per intent while there are rows) get one
extra copy with the same intent and context, changed in one of the ways chat input differs from
clean data: a typo (two adjacent letters swapped, a letter dropped or doubled), casing (all
upper, all lower), or punctuation (removed, or a trailing "??" / "!!"). Replies are not copied:
variants train the encoder (stage 1), not the decoder. Chosen and changed by a seeded RNG, so a
run is reproducible. Out-of-scope variants are not invented here: they come from the data's own
out-of-scope label (CLINC150's `oos`), since a made-up "unrelated" sentence is easy to tell apart.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from distill_worker.data.loaders import Utterance

KINDS = ("typo", "casing", "punctuation")


def _typo(text: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 3:
        return text + text[-1:]
    i = rng.choice(letters[:-1])
    how = rng.randrange(3)
    if how == 0 and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if how == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]


def _casing(text: str, rng: random.Random) -> str:
    changed = text.upper() if rng.random() < 0.5 else text.lower()
    return changed if changed != text else text.swapcase()


def _punctuation(text: str, rng: random.Random) -> str:
    stripped = text.translate(str.maketrans("", "", string.punctuation)).strip()
    if stripped != text and rng.random() < 0.5:
        return stripped
    return text.rstrip(string.punctuation + " ") + rng.choice(("??", "!!", "?!", "..."))


def variant(text: str, kind: str, rng: random.Random) -> str:
    if kind == "typo":
        return _typo(text, rng)
    if kind == "casing":
        return _casing(text, rng)
    if kind == "punctuation":
        return _punctuation(text, rng)
    raise ValueError(f"unknown variant kind {kind!r}; one of {KINDS}")


def adversarial_variants(
    rows: Sequence[Utterance], fraction: float = 0.05, seed: int = 0
) -> list[Utterance]:
    """New rows (not including `rows`): noisy copies of ~`fraction` of the labelled rows."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"adversarial fraction must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return []
    rng = random.Random(seed)
    by_intent: dict[str, list[Utterance]] = defaultdict(list)
    for row in rows:
        if row.intent:
            by_intent[row.intent].append(row)
    out: list[Utterance] = []
    for intent in sorted(by_intent):
        group = by_intent[intent]
        for row in rng.sample(group, max(1, round(len(group) * fraction))):
            text = variant(row.text, rng.choice(KINDS), rng)
            if text.strip() and text != row.text:
                out.append(replace(row, text=text, reply=None, reward=None, rejected=None))
    return out
