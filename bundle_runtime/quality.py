"""Whether a reply is fit to send, read from its text: the checks that need no model.

A degenerate reply is one a customer cannot use whatever its intent:

    empty      no word at all
    repeats    a word 3-gram occurs 3 or more times ("to assist you with any" x3)
    cut_off    the token limit ended it mid-sentence (served text without a sentence end,
               or ending in the ellipsis `trim_to_sentence` puts on a cut reply)

Used by `chatdistill eval replies`, the loop's gate (a candidate may not be more degenerate
than the champion) and the run's metrics.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

DegenerateReason = Literal["empty", "repeats", "cut_off"]
_WORD = re.compile(r"\w+(?:'\w+)?")
REPEATED_TRIGRAM = 3  # occurrences of one word 3-gram that make a reply a loop


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def degenerate_reason(text: str, finish_reason: str) -> DegenerateReason | None:
    """Why the served reply `text` is degenerate, or None. `finish_reason`: "stop" (EOS) or
    "length" (the token limit ended it)."""
    tokens = words(text)
    if not tokens:
        return "empty"
    trigrams = Counter(zip(tokens, tokens[1:], tokens[2:], strict=False))
    if trigrams and max(trigrams.values()) >= REPEATED_TRIGRAM:
        return "repeats"
    stripped = text.rstrip()
    if finish_reason == "length" and (
        stripped.endswith("...") or not stripped.endswith((".", "!", "?"))
    ):
        return "cut_off"
    return None


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
