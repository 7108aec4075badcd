"""How many tokens a reply may have, from the data when the config leaves it to the data.

`DistillConfig.max_reply_tokens` bounds everything about a reply: the teacher's replies, the
training targets (longer ones are cut, and the student learns cut replies), and the served
bundle's `max_new_tokens`. 0 (the default) takes it from the data's reference replies: their
95th percentile in decoder tokens, rounded up to a multiple of 16, at least FLOOR (what a chat
reply needs; the teacher writes to it where the data has no references) and at most what the
student's decoder positions hold. Bitext's replies run to 151 tokens at the median and 215 at
the 95th percentile: a flat 64 cut nine replies in ten mid-sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from distill_worker.data.loaders import Utterance

FLOOR = 64
QUANTILE = 0.95
STEP = 16


def reply_tokens_from_data(
    rows: Sequence[Utterance], tokenize: Callable[[str], list[int]], ceiling: int
) -> tuple[int, dict[str, object]]:
    """(the reply token budget, how it was chosen) for the training rows `rows`."""
    lengths = sorted(len(tokenize(r.reply)) for r in rows if r.reply)
    if not lengths:
        return FLOOR, {"from": "floor (no reference replies)", "tokens": FLOOR}
    at = lengths[max(0, math.ceil(QUANTILE * len(lengths)) - 1)]
    tokens = min(ceiling, max(FLOOR, -(-at // STEP) * STEP))
    return tokens, {
        "from": f"p{round(QUANTILE * 100)} of {len(lengths)} reference replies",
        "tokens": tokens,
        "quantile_tokens": at,
        "median_tokens": lengths[len(lengths) // 2],
        "cut_share": round(sum(n > tokens for n in lengths) / len(lengths), 4),
        "ceiling": ceiling,
    }
