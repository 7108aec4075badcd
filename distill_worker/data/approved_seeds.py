"""One approved answer per intent, seeded from the data's reference replies.

For each intent, the most central reference reply: the one with the highest mean TF-IDF cosine
to the intent's other references (the medoid), preferring replies without template slots, which
are rephrased (`bundle_runtime.slots`) when every reply has them, and never one that carries an
identifier (a run of 5 or more digits, a redacted PII placeholder): it belongs to one customer. Rated student replies are not
references (a customer's thumbs-up makes a reply liked, not approved). The bundle carries the
seeds; deploying it stores them for intents that have no approved answer yet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from bundle_runtime.slots import has_slots, rephrase_slots
from distill_worker.data.loaders import Utterance

MAX_CHARS = 1200  # an approved answer longer than this is not a chat reply
_IDENTIFIER = re.compile(r"\d{5,}|\[(?:CARD|IBAN|PHONE|EMAIL)\]")  # numbers, redacted PII


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
        # One customer's order or account number must never reach every customer: replies
        # that carry an identifier are no candidates (no seed rather than a wrong one).
        unique = sorted(r for r in set(replies) if not _IDENTIFIER.search(r))
        if not unique:
            continue
        clean = [r for r in unique if not has_slots(r)]
        seeds[intent] = rephrase_slots(_medoid(clean or unique))
    return seeds


def _medoid(texts: list[str]) -> str:
    if len(texts) <= 2:
        return min(texts, key=len)
    vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    sims = (vectors @ vectors.T).toarray()
    np.fill_diagonal(sims, 0.0)
    return texts[int(sims.mean(axis=1).argmax())]
