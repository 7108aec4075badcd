"""The training examples the two stages consume: already tokenized, teacher outputs attached.

Data building (loaders, teacher labelling) produces these; the stage recipes only read them.
Token ids are plain lists so that examples can be cached as JSON lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IntentExample:
    """Stage 1: one encoder input with its gold intent and the encoder teacher's view of it."""

    input_ids: list[int]  # encoder tokens, [CLS] ... [SEP], at most max_source_tokens
    label: int  # index into the intent labels; -1 when unlabelled (KD only)
    teacher_logits: list[float] | None = None  # [C] encoder teacher intent logits
    teacher_features: list[float] | None = None  # [H_teacher] pooled teacher sentence features


@dataclass(frozen=True)
class ReplyExample:
    """Stage 2: a context, a target reply, and what the teachers and customers said about it."""

    input_ids: list[int]  # encoder tokens of the (multi-turn) context
    reply_ids: list[int]  # decoder tokens of the reply, without BOS/EOS
    # Token-level KD: for each reply position, the responder's top-k next-token distribution
    # as (token ids, log-probabilities); None for sequence-level KD only (e.g. operator text).
    teacher_topk: list[tuple[list[int], list[float]]] | None = None
    weight: float = 1.0  # how much this reply counts (ratings-weighted objective)
    reward_label: float | None = None  # 1 good / 0 bad for the reward head; None: no label
    source: str = "teacher"  # "teacher" | "correction" | "reference" | "rated" | "negative"
    meta: dict[str, str] = field(default_factory=dict)
