"""Adversarial variants for data construction: typos, casing, punctuation and paraphrase noise
keep the intent and context; out-of-scope variants only where the data has the out-of-scope
label; no reply; about the asked share of each intent; reproducible."""

from __future__ import annotations

import math
import random
import re

import pytest

from distill_worker.data.augment import (
    KINDS,
    NOISE_KINDS,
    OOS_KINDS,
    adversarial_variants,
    adversarial_variants_by_kind,
    variant,
)
from distill_worker.data.demo_corpus import OOS, demo_utterances
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
        variant(text, "reverse", rng)


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
    assert set(KINDS) == {
        "typo",
        "casing",
        "punctuation",
        "paraphrase",
        "oos_copy",
        "keyboard_mash",
        "symbols",
    }
    assert all(
        not rows
        for kind, rows in adversarial_variants_by_kind(rows, 0.05).items()
        if kind in OOS_KINDS
    )  # no out-of-scope label in these rows


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w']+", text.lower().replace("\u2019", "'")))


def test_paraphrase_edits_words_but_keeps_the_intent_words() -> None:
    rng = random.Random(3)
    cases = {
        "Please cancel the jacket I ordered yesterday": {"cancel", "jacket", "ordered"},
        "hi, I can't log in since Monday": {"log", "in", "since", "monday"},
        "I want to return my headphones, they are broken": {"return", "headphones", "broken"},
        "where's my refund?": {"my", "refund"},
    }
    for text, kept in cases.items():
        outs = {variant(text, "paraphrase", rng) for _ in range(60)}
        assert text not in outs and len(outs) >= 5
        for out in outs:
            assert kept <= _words(out), out
            assert [c for c in out if c.isdigit()] == [c for c in text if c.isdigit()]
    outs = {variant("hi, I can't log in since Monday", "paraphrase", rng) for _ in range(80)}
    assert any("cannot" in o or "can not" in o for o in outs)  # contraction expanded
    assert any(o.startswith("I can't") for o in outs)  # the greeting dropped
    outs = {variant("Please cancel my order now", "paraphrase", rng) for _ in range(80)}
    assert {o.split()[0] for o in outs} >= {"Pls", "cancel"}  # capital kept; softener dropped
    outs = {variant("I want to cancel it", "paraphrase", rng) for _ in range(40)}
    assert any("wanna" in o for o in outs)
    # contracted only where a word follows; "have to" and "going to <place>" never contracted
    outs = {
        variant("what time it is in tokyo, I have to know", "paraphrase", rng) for _ in range(60)
    }
    assert any("it's in tokyo" in o for o in outs)
    assert not any("it's" in variant("what time it is", "paraphrase", rng) for _ in range(40))
    for _ in range(40):
        out = variant("I have to go, I am going to the shop", "paraphrase", rng)
        assert "I've" not in out and "gonna" not in out


def test_paraphrase_leaves_short_greetings_and_thanks_alone() -> None:
    rng = random.Random(0)
    for text in ("hello", "hi there", "asdf"):  # nothing to swap, too short to add to
        assert {variant(text, "paraphrase", rng) for _ in range(20)} == {text}
    assert {variant("thank you", "paraphrase", rng) for _ in range(20)} == {"thank u"}
    for _ in range(40):
        out = variant("thanks for your help", "paraphrase", rng)
        assert {"thanks", "thx"} & _words(out) and {"help"} <= _words(out)


def test_out_of_scope_kinds_carry_no_intent() -> None:
    rng = random.Random(5)
    for _ in range(50):
        mash = variant("", "keyboard_mash", rng)
        assert mash and set(mash) <= set("qwertyuiopasdfghjklzxcvbnm ")
        symbols = variant("", "symbols", rng)
        assert symbols.strip() and not any(c.isalnum() for c in symbols)
        copy = variant("what's the weather like", "oos_copy", rng)
        assert copy != "what's the weather like"


def _demo_with_context() -> list[Utterance]:
    return [
        Utterance(r.text, intent=r.intent, context=(("assistant", "How can I help?"),))
        for r in demo_utterances(seed=2)
    ]


def test_out_of_scope_variants_only_with_the_label_and_labelled_with_it() -> None:
    rows = _demo_with_context()
    assert OOS == "oos" and any(r.intent == OOS for r in rows)
    by_kind = adversarial_variants_by_kind(rows, 0.1, seed=4, made_up_share=0.25)
    assert list(by_kind) == list(KINDS) and all(by_kind[k] for k in KINDS)
    default = adversarial_variants_by_kind(rows, 0.1, seed=4)  # made-up rows cost precision
    assert default["oos_copy"] and not default["keyboard_mash"] and not default["symbols"]
    originals = {r.text for r in rows}
    for kind in OOS_KINDS:
        assert all(r.intent == OOS and r.reply is None for r in by_kind[kind])
    for kind in ("keyboard_mash", "symbols"):  # made up: no context to answer
        assert all(r.context == () for r in by_kind[kind])
    oos_texts = {r.text.lower() for r in rows if r.intent == OOS}
    for r in by_kind["oos_copy"]:
        assert r.text not in originals and r.context == (("assistant", "How can I help?"),)
        close = {t for t in oos_texts if abs(len(t) - len(r.text)) <= 3}
        assert close, r.text
    for kind in NOISE_KINDS:
        assert all(r.intent not in (None, OOS) and r.context for r in by_kind[kind])

    in_scope = [r for r in rows if r.intent != OOS]
    without = adversarial_variants_by_kind(in_scope, 0.1, seed=4)
    assert all(not without[k] for k in OOS_KINDS) and sum(map(len, without.values())) > 0
    plain = adversarial_variants_by_kind(rows, 0.1, 4, oos_label=None)  # oos as any intent
    assert all(not plain[k] for k in OOS_KINDS) and any(
        r.intent == OOS for k in NOISE_KINDS for r in plain[k]
    )
    renamed = [Utterance(r.text, "out_of_scope" if r.intent == OOS else r.intent) for r in rows]
    custom = adversarial_variants_by_kind(
        renamed, 0.1, 4, oos_label="out_of_scope", made_up_share=0.25
    )
    assert custom["symbols"] and all(r.intent == "out_of_scope" for r in custom["symbols"])


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.2])
def test_total_share_follows_fraction_with_a_fifth_out_of_scope(fraction: float) -> None:
    rows = _demo_with_context()
    intents = {r.intent for r in rows}
    by_kind = adversarial_variants_by_kind(rows, fraction, seed=0, made_up_share=0.25)
    total = sum(len(v) for v in by_kind.values())
    oos = sum(len(by_kind[k]) for k in OOS_KINDS)
    assert abs(total - len(rows) * fraction) <= len(intents) / 2 + 1
    assert abs(oos - round(len(rows) * fraction / 5)) <= 1
    made_up = len(by_kind["keyboard_mash"]) + len(by_kind["symbols"])
    assert 1 <= made_up <= math.ceil(oos / 4) and len(by_kind["oos_copy"]) == oos - made_up
    flat = adversarial_variants(rows, fraction, 0, made_up_share=0.25)
    assert flat == [r for k in KINDS for r in by_kind[k]]
    per_intent = {i: sum(r.intent == i for r in flat) for i in intents if i != OOS}
    assert min(per_intent.values()) >= 1


def test_reproducible_per_seed_and_bad_fraction_named() -> None:
    rows = _demo_with_context()
    assert adversarial_variants(rows, 0.05, 7) == adversarial_variants(rows, 0.05, 7)
    assert adversarial_variants(rows, 0.05, 7) != adversarial_variants(rows, 0.05, 8)
    assert all(not v for v in adversarial_variants_by_kind(rows, 0.0).values())
    for bad in (-0.01, 1.5, math.nan):
        with pytest.raises(ValueError, match="adversarial fraction"):
            adversarial_variants(rows, bad)
        with pytest.raises(ValueError, match="made_up_share"):
            adversarial_variants(rows, 0.05, made_up_share=bad)
