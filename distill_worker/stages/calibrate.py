"""Temperature scaling of the intent head, fitted on held-out data.

KD at a high temperature leaves the student's intent distribution soft: correct predictions
with 40% confidence would all be handed to a human at a 0.5 threshold. One temperature T,
chosen to minimise the held-out negative log-likelihood, makes confidences honest; it is folded
into the head (weights and bias divided by T), so exported graphs and serving are unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill_worker.model.student import Student


@torch.no_grad()
def fit_temperature(logits: Tensor, gold: Tensor) -> float:
    """logits [N,C], gold [N] -> T in [0.05, 10] minimising the NLL (log-spaced grid + refine)."""
    if logits.shape[0] == 0:
        return 1.0

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / t, gold))

    grid = [math.exp(x / 20) for x in range(-60, 47)]  # 0.05 .. 10
    best = min(grid, key=nll)
    low, high = best / math.exp(0.05), best * math.exp(0.05)
    for _ in range(30):  # golden-section refinement
        a = high - (high - low) / 1.618
        b = low + (high - low) / 1.618
        low, high = (low, b) if nll(a) < nll(b) else (a, high)
    return (low + high) / 2


@torch.no_grad()
def fold_temperature(student: Student, temperature: float) -> None:
    """Divide the intent head's last linear layer by T: logits / T without a runtime change."""
    if not temperature > 0:
        raise ValueError("the temperature must be positive")
    linear = student.intent_head[-1]
    assert isinstance(linear, torch.nn.Linear)
    linear.weight.div_(temperature)
    if linear.bias is not None:
        linear.bias.div_(temperature)
