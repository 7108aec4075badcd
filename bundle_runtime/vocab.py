"""The student decoder's vocabulary: the part of the responder's vocabulary it needs.

A 49k-token output layer dominates the student's cost (every decode step reads all of it), yet
a company's replies use a few thousand tokens. The student therefore predicts over a subset of
the responder's token ids: the specials, every token of the training replies, and the tokens
the teacher ranked in its top-k at any reply position (so token-level KD keeps most of the
teacher's mass). Index i of the student vocabulary is responder token `ids[i]`; the bundle
stores this list and serving maps generated ids back before detokenising. It is still the
responder's tokenizer: no cross-tokenizer mapping is involved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderVocab:
    ids: tuple[int, ...]  # student id -> responder token id

    def __post_init__(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("decoder vocabulary ids must be distinct")

    @property
    def size(self) -> int:
        return len(self.ids)

    def index(self) -> dict[int, int]:
        return {token: i for i, token in enumerate(self.ids)}

    def to_student(self, tokens: Iterable[int]) -> list[int]:
        """Responder ids -> student ids; every token must be in the vocabulary."""
        index = self.index()
        return [index[t] for t in tokens]

    def to_responder(self, tokens: Iterable[int]) -> list[int]:
        return [self.ids[t] for t in tokens]

    def map_topk(
        self, slots: Sequence[tuple[list[int], list[float]]]
    ) -> list[tuple[list[int], list[float]]]:
        """Keep the top-k entries inside the vocabulary (the KD loss renormalises over them)."""
        index = self.index()
        out = []
        for ids, logprobs in slots:
            kept = [(index[t], lp) for t, lp in zip(ids, logprobs, strict=True) if t in index]
            out.append(([i for i, _ in kept], [lp for _, lp in kept]))
        return out


def build_decoder_vocab(
    specials: Sequence[int],
    replies: Iterable[Sequence[int]],
    topk: Iterable[Sequence[Sequence[int]]] = (),
    *,
    limit: int = 16384,
) -> DecoderVocab:
    """Specials first (in the given order), then reply tokens, then top-k alternatives by how
    often the teacher proposed them, up to `limit` ids in all."""
    ordered: list[int] = []
    seen: set[int] = set()
    for token in specials:
        if token not in seen:
            seen.add(token)
            ordered.append(token)
    reply_counts: Counter[int] = Counter(t for reply in replies for t in reply)
    alt_counts: Counter[int] = Counter(t for slots in topk for slot in slots for t in slot)
    for token, _ in reply_counts.most_common():
        if token not in seen and len(ordered) < limit:
            seen.add(token)
            ordered.append(token)
    for token, _ in alt_counts.most_common():
        if token not in seen and len(ordered) < limit:
            seen.add(token)
            ordered.append(token)
    missing = set(reply_counts) - seen
    if missing:
        raise ValueError(f"{len(missing)} reply tokens do not fit in a vocabulary of {limit}")
    return DecoderVocab(tuple(ordered))
