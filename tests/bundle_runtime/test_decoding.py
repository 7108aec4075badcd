"""The decoding controls on hand-made logits: what each one bans or changes, and that greedy
settings are plain argmax."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bundle_runtime.decoding import Decoding, banned_by_ngrams, next_tokens, trim_to_sentence

EOS = 0


def logits_preferring(*order: int, vocab: int = 8) -> np.ndarray:
    """One row of logits where `order[0]` is best, then `order[1]`, ..."""
    row = np.full(vocab, -5.0, dtype=np.float32)
    for rank, token in enumerate(order):
        row[token] = 5.0 - rank
    return row[None, :]


def test_greedy_is_plain_argmax() -> None:
    logits = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    histories = [[1, 2, 1, 2], [], [3], [7, 7, 7]]
    out = next_tokens(logits, histories, EOS, Decoding.greedy())
    assert out.tolist() == logits.argmax(axis=-1).tolist()


def test_a_repeated_trigram_is_banned() -> None:
    history = [5, 6, 7, 5, 6]  # "5 6 7" already said; after "5 6", 7 would repeat it
    assert banned_by_ngrams(history, 3) == {7}
    assert banned_by_ngrams(history, 2) == {7}  # "6" was followed by 7 once
    assert banned_by_ngrams(history, 1) == {5, 6, 7}  # no token twice
    only_ngrams = Decoding(no_repeat_ngram=3, repetition_penalty=1.0, min_new_tokens=0)
    out = next_tokens(logits_preferring(7, 4), [history], EOS, only_ngrams)
    assert out.tolist() == [4]
    greedy = next_tokens(logits_preferring(7, 4), [history], EOS, Decoding.greedy())
    assert greedy.tolist() == [7]


def test_the_penalty_lowers_tokens_already_said() -> None:
    row = np.array([[-1.0, 2.0, 1.8, -3.0]], dtype=np.float32)
    before = row.copy()
    penalty = Decoding(no_repeat_ngram=0, repetition_penalty=1.2, min_new_tokens=0)
    assert next_tokens(row, [[1]], EOS, penalty).tolist() == [2]  # 2.0 / 1.2 < 1.8
    assert next_tokens(row, [[3]], EOS, penalty).tolist() == [1]  # unsaid 1 still wins
    assert np.array_equal(row, before)  # the caller's logits are not changed


def test_the_window_limits_both_controls_to_recent_tokens() -> None:
    # "5 6 7" was said 6 tokens ago: with a window of 4 it may be said again, and 5 and 6 are
    # no longer penalised; within the window both controls still act.
    history = [5, 6, 7, 1, 2, 3, 5, 6]
    whole = Decoding(no_repeat_ngram=3, repetition_penalty=1.0, min_new_tokens=0)
    windowed = Decoding(
        no_repeat_ngram=3, repetition_penalty=1.0, min_new_tokens=0, repeat_window=4
    )
    assert next_tokens(logits_preferring(7, 4), [history], EOS, whole).tolist() == [4]
    assert next_tokens(logits_preferring(7, 4), [history], EOS, windowed).tolist() == [7]
    recent = [2, 3, 5, 6, 2, 3]  # "2 3 5" is inside the last 6 tokens: banned
    small = Decoding(no_repeat_ngram=3, repetition_penalty=1.0, min_new_tokens=0, repeat_window=6)
    assert next_tokens(logits_preferring(5, 4), [recent], EOS, small).tolist() == [4]
    row = np.array([[-1.0, 2.0, 1.8, -3.0]], dtype=np.float32)
    penalty = Decoding(no_repeat_ngram=0, repetition_penalty=1.2, min_new_tokens=0, repeat_window=2)
    assert next_tokens(row, [[1, 3, 3]], EOS, penalty).tolist() == [1]  # 1 left the window
    assert next_tokens(row, [[3, 1]], EOS, penalty).tolist() == [2]
    # the minimum length counts the whole reply, not the window
    minimum = Decoding(no_repeat_ngram=0, repetition_penalty=1.0, min_new_tokens=3, repeat_window=1)
    assert next_tokens(logits_preferring(EOS, 3), [[4, 4]], EOS, minimum).tolist() == [3]
    assert Decoding(repeat_window=16).with_overrides({}).repeat_window == 16
    assert Decoding.greedy().is_greedy and replace(Decoding.greedy(), repeat_window=8).is_greedy
    with pytest.raises(ValueError, match="repeat_window"):
        Decoding(repeat_window=-1)


def test_no_end_before_the_minimum_length() -> None:
    minimum = Decoding(no_repeat_ngram=0, repetition_penalty=1.0, min_new_tokens=2)
    rows = np.concatenate([logits_preferring(EOS, 3), logits_preferring(EOS, 3)])
    out = next_tokens(rows, [[4], [4, 5]], EOS, minimum)
    assert out.tolist() == [3, EOS]


def test_everything_banned_ends_the_reply() -> None:
    strict = Decoding(no_repeat_ngram=1, repetition_penalty=1.0, min_new_tokens=0)
    out = next_tokens(logits_preferring(1, 2, vocab=3), [[1, 2, 0]], EOS, strict)
    assert out.tolist() == [EOS]


def test_settings_from_a_manifest_and_overrides() -> None:
    assert Decoding.from_dict({}) == Decoding() == Decoding.from_dict(None)
    stored = Decoding.from_dict({"no_repeat_ngram": 4})
    assert (
        stored.no_repeat_ngram == 4 and stored.repetition_penalty == Decoding().repetition_penalty
    )
    assert stored.with_overrides({"repetition_penalty": 1.0, "min_new_tokens": None}) == Decoding(
        no_repeat_ngram=4, repetition_penalty=1.0
    )
    with pytest.raises(ValueError, match="unknown decoding settings"):
        Decoding.from_dict({"top_p": 0.9})
    with pytest.raises(ValueError, match="repetition_penalty"):
        Decoding(repetition_penalty=0.5)


@pytest.mark.parametrize(
    ("raw", "served"),
    [
        ("Your order ships today. It arrives on Mon", "Your order ships today."),
        (
            "Sure. Your refund of the full amount will be credited within five bus",
            "Sure. Your refund of the full amount will be credited within five...",
        ),
        # the last word may be cut mid-word: it goes too
        ("Thanks! We will call you", "Thanks! We will call..."),
    ],
)
def test_a_cut_reply_ends_at_a_sentence_or_a_whole_word(raw: str, served: str) -> None:
    assert trim_to_sentence(raw) == served
