"""One approved answer per intent, seeded from the data's reference replies.

For each intent, the most central reference reply: the one with the highest mean TF-IDF cosine
to the intent's other references (the medoid), preferring replies without template slots, which
are rephrased (`bundle_runtime.slots`) when every reply has them. Rated student replies are not
references (a customer's thumbs-up makes a reply liked, not approved). The bundle carries the
seeds; deploying it stores them for intents that have no approved answer yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from bundle_runtime.slots import has_slots, rephrase_slots
from distill_worker.data.loaders import Utterance

MAX_CHARS = 1200  # an approved answer longer than this is not a chat reply


def central_replies(rows: Sequence[Utterance], *, oos_label: str | None) -> dict[str, str]:
    """Intent -> its most central reference reply (see the module docstring)."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.intent and row.intent != oos_label and row.reply and row.reward is None:
            text = row.reply.strip()
            if text and len(text) <= MAX_CHARS:
                by_intent[row.intent].append(text)
    seeds: dict[str, str] = {}
    for intent, replies in sorted(by_intent.items()):
        unique = sorted(set(replies))
        clean = [r for r in unique if not has_slots(r)]
        pool = clean or unique
        seeds[intent] = rephrase_slots(_medoid(pool))
    return seeds


def _medoid(texts: list[str]) -> str:
    if len(texts) <= 2:
        return min(texts, key=len)
    vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    sims = (vectors @ vectors.T).toarray()
    np.fill_diagonal(sims, 0.0)
    return texts[int(sims.mean(axis=1).argmax())]
