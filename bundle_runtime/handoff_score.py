"""The score a message's handoff is decided on, from the student's intent logits.

The bot answers when its predicted intent is not out-of-scope and the score reaches the bundle's
threshold (`Manifest.handoff_score`, `Manifest.handoff_threshold`):

    max-softmax   the predicted intent's probability: a threshold in [0, 1]
    energy        the log of the summed exponentials of the in-scope intents' logits (the
                  negative free energy; Liu et al., 2020, "Energy-based out-of-distribution
                  detection"), the `oos` column left out: a threshold in logit units

A message of a subject the bot was never taught tends to raise no logit high, which the energy
sees; the softmax divides that away (a flat row of low logits can still have one intent well
ahead of the others). On CLINC150's val + oos_val, one student: out-of-scope AUROC 0.976 with
energy against 0.897 with max-softmax (README). Both are computed on the temperature-scaled
logits that the bundle's head already gives. Standard library and numpy only: serving, the
run's calibration and the benchmarks share it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

MAX_SOFTMAX: Literal["max-softmax"] = "max-softmax"
ENERGY: Literal["energy"] = "energy"
HandoffScore = Literal["max-softmax", "energy"]
HANDOFF_SCORES: tuple[HandoffScore, ...] = (MAX_SOFTMAX, ENERGY)


def _check_score(score: str) -> None:
    if score not in HANDOFF_SCORES:
        raise ValueError(f"unknown handoff score {score!r}; known: {', '.join(HANDOFF_SCORES)}")


def check_handoff(score: str, threshold: float) -> None:
    """ValueError unless `score` is known and `threshold` is a value it can take."""
    _check_score(score)
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ValueError(f"the handoff threshold must be a finite number, got {threshold!r}")
    if score == MAX_SOFTMAX and not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"the handoff threshold {threshold} is not a probability: with the max-softmax "
            "score it must be between 0 and 1"
        )


def intent_scores(
    logits: npt.ArrayLike, score: str, oos: int | None
) -> tuple[list[int], list[float], list[float]]:
    """Intent logits [N, C] -> (predicted intent index, its softmax probability, handoff score)
    per row. The score is -inf where the prediction is `oos` (handed off at any threshold) and
    where a row has no finite in-scope logit (every intent masked)."""
    _check_score(score)
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"intent logits must be [rows, intents], got shape {x.shape}")
    if x.shape[0] == 0:
        return [], [], []
    pred = x.argmax(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        top = x.max(axis=-1, keepdims=True)
        probs = np.exp(x - top) / np.exp(x - top).sum(axis=-1, keepdims=True)
        prob = probs[np.arange(len(pred)), pred]
        if score == ENERGY:
            inside = x if oos is None else np.delete(x, oos, axis=1)
            peak = inside.max(axis=-1, keepdims=True) if inside.shape[1] else None
            if peak is None:
                values = np.full(len(pred), -np.inf)
            else:
                sums = np.exp(inside - peak).sum(axis=-1)
                values = np.where(np.isfinite(peak[:, 0]), peak[:, 0] + np.log(sums), -np.inf)
        else:
            values = prob
    out = [
        -math.inf if (oos is not None and p == oos) or not math.isfinite(v) else float(v)
        for p, v in zip(pred.tolist(), values.tolist(), strict=True)
    ]
    return pred.tolist(), [float(p) for p in prob.tolist()], out
