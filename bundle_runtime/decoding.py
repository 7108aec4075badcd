"""How the next token is chosen from the decoder's logits: greedy with repetition control.

Plain greedy decoding of a small student loops ("I'm here to assist you you you you"): once a
phrase is likely it stays likely. Three controls, applied to each row's logits before the argmax,
identical in `OnnxStudent`'s loop and the continuous batcher (both call `next_tokens`):

    no_repeat_ngram     a token that would complete an n-gram the row already produced is
                        banned (0: off). The classic fix for loops (Paulus et al. 2017).
    repetition_penalty  logits of tokens the row already produced are divided by it when
                        positive, multiplied when negative (CTRL, Keskar et al. 2019; 1.0: off).
    min_new_tokens      EOS is banned before this many tokens (an empty reply helps no one).
    repeat_window       the first two look at the row's last this many tokens only (0: the
                        whole reply). Loops are local; a long reply repeats phrases as its
                        steps go ("click on the", once a step), which a whole-reply ban forbids.

`trim_to_sentence` ends a reply that hit the token limit at its last sentence boundary instead
of mid-word. Defaults live in the bundle manifest (`decoding`); serving settings may override.
Shapes: B rows, V decoder vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@dataclass(frozen=True)
class Decoding:
    no_repeat_ngram: int = 3
    repetition_penalty: float = 1.2
    min_new_tokens: int = 1
    repeat_window: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.no_repeat_ngram <= 16:
            raise ValueError(f"no_repeat_ngram must be 0 (off) to 16, not {self.no_repeat_ngram}")
        if not 1.0 <= self.repetition_penalty <= 10.0:
            raise ValueError(
                f"repetition_penalty must be 1.0 (off) to 10.0, not {self.repetition_penalty}"
            )
        if not 0 <= self.min_new_tokens <= 64:
            raise ValueError(f"min_new_tokens must be 0 to 64, not {self.min_new_tokens}")
        if not 0 <= self.repeat_window <= 4096:
            raise ValueError(f"repeat_window must be 0 (off) to 4096, not {self.repeat_window}")

    @classmethod
    def greedy(cls) -> Decoding:
        """Plain argmax: what the torch student's `generate` does (export parity uses it)."""
        return cls(no_repeat_ngram=0, repetition_penalty=1.0, min_new_tokens=0, repeat_window=0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Decoding:
        """From a manifest's `decoding` object; missing keys take the defaults above. Unknown
        keys are an error (a newer bundle asks for a control this runtime lacks)."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown decoding settings {unknown} (this runtime knows {sorted(known)}); "
                "upgrade chatdistill or re-export the bundle"
            )
        return cls(**dict(data))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Decoding:
        """A copy with the non-None values of `overrides` (serving settings) applied."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_greedy(self) -> bool:
        """No control is on (the window alone changes nothing)."""
        return replace(self, repeat_window=0) == Decoding.greedy()


def banned_by_ngrams(history: Sequence[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram of `history` if produced next. One pass over the
    history, comparing the last token first (cheap, and usually enough to move on)."""
    size = len(history)
    if n <= 0 or size < n - 1:
        return set()
    if n == 1:
        return set(history)
    last = history[-1]
    prefix = list(history[size - (n - 1) :])
    banned = set()
    for i in range(n - 2, size - 1):  # i: where the prefix's last token would sit
        if history[i] == last and list(history[i - n + 2 : i + 1]) == prefix:
            banned.add(history[i + 1])
    return banned


def next_tokens(
    logits: FloatArray, histories: Sequence[Sequence[int]], eos: int, decoding: Decoding
) -> IntArray:
    """logits [B,V], each row's generated tokens so far (without BOS) -> the next token [B]."""
    if decoding.is_greedy:
        greedy: IntArray = logits.argmax(axis=-1).astype(np.int64)
        return greedy
    scores = np.array(logits, dtype=np.float32, copy=True)
    # Gather every row's said tokens and banned tokens first, then change the scores with two
    # fancy-indexing operations for the whole batch (per-row numpy calls cost more than the
    # work itself at these sizes).
    said_rows: list[int] = []
    said_tokens: list[int] = []
    ban_rows: list[int] = []
    ban_tokens: list[int] = []
    window = decoding.repeat_window
    for row, full in enumerate(histories):
        history = full[-window:] if window else full
        if decoding.repetition_penalty != 1.0 and history:
            said = set(history)
            said_rows.extend([row] * len(said))
            said_tokens.extend(said)
        banned = banned_by_ngrams(history, decoding.no_repeat_ngram)
        if len(full) < decoding.min_new_tokens:
            banned.add(eos)
        ban_rows.extend([row] * len(banned))
        ban_tokens.extend(banned)
    if said_rows:
        rows, tokens = np.asarray(said_rows), np.asarray(said_tokens)
        values = scores[rows, tokens]
        penalty = decoding.repetition_penalty
        scores[rows, tokens] = np.where(values > 0, values / penalty, values * penalty)
    if ban_rows:
        scores[np.asarray(ban_rows), np.asarray(ban_tokens)] = -np.inf
        touched = np.unique(np.asarray(ban_rows))
        dead = touched[~np.isfinite(scores[touched]).any(axis=1)]
        scores[dead, eos] = 0.0  # everything banned: the reply ends
    chosen: IntArray = scores.argmax(axis=-1).astype(np.int64)
    return chosen


def trim_to_sentence(text: str, *, keep_at_least: float = 0.5) -> str:
    """A reply cut by the token limit, ended at its last sentence boundary when that keeps at
    least `keep_at_least` of it; otherwise at its last whole word, with an ellipsis."""
    text = text.rstrip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= keep_at_least * len(text):
        return text[: ends[-1]]
    cut = text.rfind(" ")
    body = text[:cut].rstrip(" ,;:-") if cut > 0 else text
    return body + "..."
