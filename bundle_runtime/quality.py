"""Whether a reply is fit to send, read from its text: the checks that need no model.

A degenerate reply is one a customer cannot use whatever its intent:

    empty      no word at all
    repeats    a word 3-gram occurs 3 or more times within 30 consecutive words ("to assist
               you with any" x3), or a sentence of 5 or more words is said twice
    cut_off    the token limit ended it mid-sentence (served text without a sentence end,
               or ending in the ellipsis `trim_to_sentence` puts on a cut reply)

Loops are local: a long reply may repeat a phrase as its steps go ("click on the", once per
step). Counted over the whole reply, 3-gram repeats marked 13.6% of Bitext's human reference
replies as loops; within 30 words, 1.0%, and every loop seen in real runs is still caught.

Used by `chatdistill eval replies`, the loop's gate (a candidate may not be more degenerate
than the champion) and the run's metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

DegenerateReason = Literal["empty", "repeats", "cut_off"]
_WORD = re.compile(r"\w+(?:'\w+)?")
REPEATED_TRIGRAM = 3  # occurrences of one word 3-gram that make a reply a loop ...
LOOP_WINDOW = 30  # ... when they start within this many words
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
SENTENCE_WORDS = 5  # a sentence this long said twice is a loop too


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def degenerate_reason(text: str, finish_reason: str) -> DegenerateReason | None:
    """Why the served reply `text` is degenerate, or None. `finish_reason`: "stop" (EOS) or
    "length" (the token limit ended it)."""
    tokens = words(text)
    if not tokens:
        return "empty"
    if _loops(tokens) or _repeated_sentence(text):
        return "repeats"
    stripped = text.rstrip()
    if finish_reason == "length" and (
        stripped.endswith("...") or not stripped.endswith((".", "!", "?"))
    ):
        return "cut_off"
    return None


def _loops(tokens: list[str]) -> bool:
    """Whether one word 3-gram occurs REPEATED_TRIGRAM times within LOOP_WINDOW words."""
    starts: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(tokens) - 2):
        seen = starts.setdefault(tuple(tokens[i : i + 3]), [])
        seen.append(i)
        if len(seen) >= REPEATED_TRIGRAM and i - seen[-REPEATED_TRIGRAM] < LOOP_WINDOW:
            return True
    return False


def _repeated_sentence(text: str) -> bool:
    sentences = [tuple(words(s)) for s in _SENTENCE.split(text)]
    long = [s for s in sentences if len(s) >= SENTENCE_WORDS]
    return len(long) != len(set(long))


def degenerate_counts(replies: Iterable[tuple[str, str]]) -> dict[str, int]:
    """(text, finish_reason) pairs -> {"rows", "degenerate", "empty", "repeats", "cut_off"}."""
    counts = {"rows": 0, "degenerate": 0, "empty": 0, "repeats": 0, "cut_off": 0}
    for text, finish in replies:
        counts["rows"] += 1
        reason = degenerate_reason(text, finish)
        if reason is not None:
            counts["degenerate"] += 1
            counts[reason] += 1
    return counts
