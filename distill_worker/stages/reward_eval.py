"""How well the reward head (and the decoder) tell good replies from bad ones on held-back data.

* `roc_auc`: the probability that a random good reply scores above a random bad one (ties count
  half); 0.5 is chance. Rank-based (Mann-Whitney U), no sklearn.
* `reward_scores`: the reward head's logit for each (context, reply) example.
* `reply_logprobs`: the decoder's mean per-token log-probability of each reply: with it, the
  AUC says whether training made the student likelier to say the replies customers liked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from distill_worker.data.examples import ReplyExample
from distill_worker.model.student import Student
from distill_worker.stages.decoder_stage import collate_replies
from distill_worker.stages.losses import sequence_logprob
from distill_worker.stages.training import to_device


def roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """AUC of `scores` for binary `labels` (>= 0.5 is positive). ValueError without both."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    pos = [s for s, y in zip(scores, labels, strict=True) if y >= 0.5]
    neg = [s for s, y in zip(scores, labels, strict=True) if y < 0.5]
    if not pos or not neg:
        raise ValueError("AUC needs at least one good and one bad example")
    ranked = sorted((s, i) for i, s in enumerate([*pos, *neg]))
    ranks = [0.0] * len(ranked)
    start = 0
    while start < len(ranked):  # average ranks over ties
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        for k in range(start, end + 1):
            ranks[ranked[k][1]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(ranks[: len(pos)])
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@torch.no_grad()
def _batches(
    student: Student, examples: Sequence[ReplyExample], max_source: int, max_reply: int, batch: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(reward logits [B], mean token log-prob [B]) per batch, dropout off, on the CPU (the
    student may be on a GPU)."""
    cfg = student.cfg
    device = next(student.parameters()).device
    was_training = student.training
    student.eval()
    out = []
    try:
        for start in range(0, len(examples), batch):
            rows = list(examples[start : start + batch])
            special = (cfg.dec_bos_id, cfg.dec_eos_id, cfg.dec_pad_id)
            b = to_device(collate_replies(rows, max_source, max_reply, *special), device)
            result = student(b.input_ids, b.attention_mask, b.decoder_input_ids, b.decoder_mask)
            total = sequence_logprob(result["logits"], b.targets, b.decoder_mask)
            mean = total / b.decoder_mask.sum(dim=1).clamp(min=1)
            out.append((result["reward"].cpu(), mean.cpu()))
    finally:
        student.train(was_training)
    return out


def reward_scores(
    student: Student,
    examples: Sequence[ReplyExample],
    *,
    max_source: int,
    max_reply: int,
    batch: int = 64,
) -> list[float]:
    return [
        float(x) for r, _ in _batches(student, examples, max_source, max_reply, batch) for x in r
    ]


def reply_logprobs(
    student: Student,
    examples: Sequence[ReplyExample],
    *,
    max_source: int,
    max_reply: int,
    batch: int = 64,
) -> list[float]:
    return [
        float(x) for _, lp in _batches(student, examples, max_source, max_reply, batch) for x in lp
    ]
