"""Distillation losses: pure functions of tensors, plus `DynamicLossWeights` (plain Python state).

Shapes: B batch, C intents, H student features, F teacher features, T target length,
V decoder vocabulary, k teacher top-k. Every loss returns a scalar tensor; a loss with nothing
to average over (no labelled row, no masked position) returns a zero that keeps the graph, so
callers can always add it and call backward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def logit_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """[B,C], [B,C] -> KL(softmax(t/tau) || softmax(s/tau)) * tau^2, mean over B.

    The tau^2 factor keeps the gradient scale independent of tau (Hinton et al., 2015).
    """
    t_logp = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    s_logp = F.log_softmax(student_logits.float() / tau, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(dim=-1)
    return kl.mean() * tau**2


def feature_mse(
    student_features: Tensor, teacher_features: Tensor, projection: nn.Module
) -> Tensor:
    """student [B,H], teacher [B,F], projection H -> F: mean squared error over all B*F entries."""
    projected: Tensor = projection(student_features)
    return F.mse_loss(projected.float(), teacher_features.float())


def task_ce(logits: Tensor, labels: Tensor, ignore_index: int = -1) -> Tensor:
    """logits [B,C], labels [B] -> cross-entropy averaged over rows whose label != ignore_index."""
    valid = labels != ignore_index
    ce = F.cross_entropy(logits.float(), labels.clamp(min=0), reduction="none")
    return (ce * valid).sum() / valid.sum().clamp(min=1)


def token_kd_topk(
    student_logits: Tensor, top_ids: Tensor, top_logprobs: Tensor, mask: Tensor
) -> Tensor:
    """Token-level KD from the teacher's top-k: mean over masked positions of KL(p_k || q_k).

    student_logits [B,T,V]; top_ids [B,T,k] teacher token ids; top_logprobs [B,T,k] their
    teacher log-probabilities (-inf marks a padding slot); mask [B,T] (1 where the teacher's
    top-k is known).

    p_k is the teacher's top-k distribution renormalised over its k ids; q_k is the student's
    distribution restricted to the same k ids and renormalised over them. So the loss matches
    the *shape* of the two distributions on the ids the teacher cares about and is bounded; the
    student's mass outside the k ids is not penalised here (the sequence CE already pushes mass
    onto the target). When the k ids cover the support of both distributions (in particular
    k = V), p_k and q_k are the full distributions and this is exactly the full KL(p || q); when
    they cover only the teacher's, it is KL(p || q) + log q(ids) <= KL(p || q).
    """
    slot = torch.isfinite(top_logprobs)
    row_has_slot = slot.any(dim=-1)
    # A row without any real slot (padding position) is made uniform so nothing is NaN; it is
    # masked out below.
    usable = slot | ~row_has_slot[..., None]
    t_logits = torch.where(slot, top_logprobs, torch.zeros_like(top_logprobs)).float()
    t_logp = F.log_softmax(t_logits.masked_fill(~usable, -math.inf), dim=-1)
    s_gathered = student_logits.gather(-1, top_ids).float().masked_fill(~usable, -math.inf)
    s_logp = F.log_softmax(s_gathered, dim=-1)
    zero = torch.zeros_like(t_logp)
    t_logp_safe = torch.where(usable, t_logp, zero)
    s_logp_safe = torch.where(usable, s_logp, zero)
    kl = (t_logp_safe.exp() * usable * (t_logp_safe - s_logp_safe)).sum(dim=-1)  # [B,T]
    m = mask.float() * row_has_slot
    return (kl * m).sum() / m.sum().clamp(min=1.0)


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """logits [B,T,V], targets [B,T] -> log p(target) per position [B,T]."""
    b, t, v = logits.shape
    ce = F.cross_entropy(logits.float().reshape(b * t, v), targets.reshape(-1), reduction="none")
    return -ce.view(b, t)


def sequence_logprob(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """logits [B,T,V], targets [B,T], mask [B,T] -> log p(reply) [B], the sum of the masked
    token log-probs."""
    return (token_logprobs(logits, targets) * mask).sum(dim=-1)


def sequence_ce(logits: Tensor, targets: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """logits [B,T,V], targets [B,T], mask [B,T], weights [B] (>= 0) -> scalar.

    sum_{b,t} w_b m_bt CE_bt / sum_{b,t} m_bt: token cross-entropy where each example counts
    w_b times. The denominator is the number of real target tokens (not the weight total), so
    the weights act absolutely: a batch of replies weighted 0.5 pulls half as hard.
    """
    ce = -token_logprobs(logits, targets)
    m = mask.float()
    return (ce * m * weights.float()[:, None]).sum() / m.sum().clamp(min=1.0)


def reward_bce(reward_logits: Tensor, labels: Tensor, mask_of_labelled: Tensor) -> Tensor:
    """reward_logits [B], labels [B] in [0, 1], mask_of_labelled [B] -> BCE-with-logits averaged
    over the labelled rows."""
    bce = F.binary_cross_entropy_with_logits(
        reward_logits.float(), labels.float(), reduction="none"
    )
    m = mask_of_labelled.float()
    return (bce * m).sum() / m.sum().clamp(min=1.0)


def kto_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    desirable: Tensor,
    mask_of_labelled: Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """KTO-style objective (Ethayarajh et al., 2024) for unpaired good/bad replies.

    policy_logps, reference_logps [B]: log p(reply | context) under the student and under the
    frozen reference (the student as stage 2 found it); desirable [B] bool; mask_of_labelled [B].

    r_b = policy_b - reference_b is the implicit reward. The reference point
    z = max(0, mean of r over the labelled rows), detached: a batch estimate of
    KL(policy || reference), as in the paper, with no gradient through it. Then
        desirable:   lambda_D * (1 - sigmoid(beta * (r - z)))
        undesirable: lambda_U * (1 - sigmoid(beta * (z - r)))
    averaged over the labelled rows. Good replies are pushed above the reference point, bad
    ones below it, and the sigmoid saturates so no single example dominates.
    """
    labelled = mask_of_labelled.bool()
    m = labelled.float()
    r = policy_logps.float() - reference_logps.float()
    r = torch.where(labelled, r, torch.zeros_like(r))  # unlabelled rows may hold NaN references
    z = ((r * m).sum() / m.sum().clamp(min=1.0)).clamp(min=0.0).detach()
    good = desirable_weight * (1.0 - torch.sigmoid(beta * (r - z)))
    bad = undesirable_weight * (1.0 - torch.sigmoid(beta * (z - r)))
    per_row = torch.where(desirable.bool(), good, bad)
    return (per_row * m).sum() / m.sum().clamp(min=1.0)


class DynamicLossWeights:
    """Loss weights that move towards the objectives improving slowest.

    State per objective i: start weight w0_i (normalised to sum 1), first observed loss L0_i and
    an EMA of the loss E_i (E <- ema * E + (1 - ema) * L). Progress ratio r_i = E_i / L0_i
    (1: no progress, < 1: improving; 1 before the objective is first seen). Then
        s_i = w0_i * exp(r_i / T) / sum_j w0_j * exp(r_j / T)
        w_i = (1 - mix) * w0_i + mix * s_i
    Equal progress keeps the start weights; a stalled objective gains weight; no weight drops
    below (1 - mix) * w0_i; the weights always sum to 1. With `enabled=False` the weights stay
    at w0 (the EMAs are still tracked for the log). Deterministic: plain float arithmetic.
    """

    def __init__(
        self,
        start: Mapping[str, float],
        *,
        enabled: bool = True,
        temperature: float = 0.5,
        mix: float = 0.5,
        ema: float = 0.9,
    ) -> None:
        total = sum(start.values())
        if not start or total <= 0 or any(w < 0 for w in start.values()):
            raise ValueError("start weights must be >= 0 with a positive sum")
        if temperature <= 0 or not 0.0 <= mix <= 1.0 or not 0.0 <= ema < 1.0:
            raise ValueError("need temperature > 0, mix in [0, 1] and ema in [0, 1)")
        self.start = {name: w / total for name, w in start.items()}
        self.enabled, self.temperature, self.mix, self.ema = enabled, temperature, mix, ema
        self.initial: dict[str, float] = {}
        self.average: dict[str, float] = {}
        self.weights: dict[str, float] = dict(self.start)

    def ratios(self) -> dict[str, float]:
        return {
            name: self.average[name] / self.initial[name]
            if name in self.initial and self.initial[name] > 0
            else 1.0
            for name in self.start
        }

    def update(self, losses: Mapping[str, float]) -> dict[str, float]:
        """Feed this step's loss values (objectives absent this step are left out) and return
        the weights to use from now on."""
        for name, value in losses.items():
            if name not in self.start:
                raise KeyError(f"unknown objective {name!r}; known: {sorted(self.start)}")
            if not math.isfinite(value):
                continue
            if name not in self.initial:
                self.initial[name] = self.average[name] = value
            else:
                self.average[name] = self.ema * self.average[name] + (1.0 - self.ema) * value
        if self.enabled:
            ratios = self.ratios()
            top = max(ratios.values())
            raw = {
                n: w * math.exp((ratios[n] - top) / self.temperature) for n, w in self.start.items()
            }
            norm = sum(raw.values())
            self.weights = {
                n: (1.0 - self.mix) * w0 + self.mix * raw[n] / norm for n, w0 in self.start.items()
            }
        return dict(self.weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "initial": dict(self.initial),
            "average": dict(self.average),
            "weights": dict(self.weights),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.initial = {str(k): float(v) for k, v in state["initial"].items()}
        self.average = {str(k): float(v) for k, v in state["average"].items()}
        self.weights = {str(k): float(v) for k, v in state["weights"].items()}
