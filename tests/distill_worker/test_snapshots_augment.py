"""Adversarial variants for data construction: typos, casing, punctuation; same intent and
context, no reply, about the asked share of each intent, reproducible."""

from __future__ import annotations

import random

import pytest

from distill_worker.data.augment import KINDS, adversarial_variants, variant
from distill_worker.data.loaders import Utterance


def test_each_kind_changes_only_what_it_says() -> None:
    rng = random.Random(0)
    text = "Where is my parcel, please?"
    for _ in range(30):
        typo = variant(text, "typo", rng)
        swapped = sorted(typo) == sorted(text)  # two adjacent letters swapped
        one_letter = abs(len(typo) - len(text)) == 1  # a letter dropped or doubled
        assert typo != text and (swapped or one_letter)
        cased = variant(text, "casing", rng)
        assert cased != text and cased.lower() == text.lower()
        punct = variant(text, "punctuation", rng)
        assert punct != text and [c for c in punct if c.isalnum()] == [
            c for c in text if c.isalnum()
        ]
    with pytest.raises(ValueError, match="unknown variant kind"):
        variant(text, "paraphrase", rng)


def test_share_per_intent_labels_kept_replies_dropped_and_reproducible() -> None:
    rows = [
        Utterance(
            f"question number {i} about {intent}?",
            intent=intent,
            reply="an answer",
            context=(("assistant", "hi"),),
        )
        for intent in ("refund", "track", "cancel")
        for i in range(40)
    ]
    rows.append(Utterance("no label here"))
    out = adversarial_variants(rows, 0.05, seed=1)
    assert sorted(r.intent or "" for r in out) == ["cancel"] * 2 + ["refund"] * 2 + ["track"] * 2
    assert all(r.reply is None and r.context == (("assistant", "hi"),) for r in out)
    originals = {r.text for r in rows}
    assert all(r.text not in originals for r in out)
    assert out == adversarial_variants(rows, 0.05, seed=1)
    assert adversarial_variants(rows, 0.0) == []
    assert set(KINDS) == {"typo", "casing", "punctuation"}
