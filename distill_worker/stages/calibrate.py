"""Temperature scaling of the intent head, and the handoff threshold, fitted on held-out data.

KD at a high temperature leaves the student's intent distribution soft: correct predictions
with 40% confidence would all be handed to a human at a 0.5 threshold. One temperature T,
chosen to minimise the held-out negative log-likelihood, makes confidences honest; it is folded
into the head (weights and bias divided by T), so exported graphs and serving are unchanged.

The handoff threshold is then chosen on the same calibration rows (never on the rows a run
reports on), on the run's handoff score (`bundle_runtime.handoff_score`: energy or
max-softmax, by default whichever separates the calibration rows from their negatives better,
`calibrate_logits`): the lowest score at which the answers the bot still gives are right often
enough (`fit_handoff_threshold`), with the data's out-of-scope rows, and any out-of-domain
rows given to the run, as the messages it should not answer. Data with few of those still gets
negatives: **pseudo-out-of-scope** rows, each calibration row scored as if its intent were not
one the bot knows (`pseudo_oos_confidences`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from bundle_runtime.handoff_score import ENERGY, HANDOFF_SCORES, MAX_SOFTMAX, intent_scores
from distill_worker.model.student import Student
from distill_worker.run_config import AUTO, DEFAULT_HANDOFF_PRECISION, DEFAULT_OOS_PRIOR
from distill_worker.stages.reward_eval import roc_auc


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


# ------------------------------------------------------------------------------ handoff threshold

MIN_COVERAGE = 0.8  # never calibrate into handing off more than a fifth of the in-scope traffic
# Fewer negatives than this cannot show how often out-of-scope messages get answered (CLINC150's
# calibration half holds 5 of them, all caught, while 57% of `oos_val` passed the threshold
# they chose). Then the threshold is at least the confidence under which only (1 - KEEP_RIGHT)
# of the right answers fall, measured once there are FLOOR_ROWS right answers to measure it on.
MIN_NEGATIVES = 50
KEEP_RIGHT = 0.99
FLOOR_ROWS = 100


@dataclass(frozen=True)
class HandoffCalibration:
    """The handoff threshold on the calibrated intent confidence, and what it was chosen from.

    The bot answers a message when its predicted intent is not out-of-scope and the confidence
    reaches `threshold`. `precision` is the estimated share of answered messages whose intent is
    right, with out-of-scope messages making up `oos_prior` of the traffic; `coverage` the share
    of in-scope messages answered; `oos_answered` the share of out-of-scope ones answered.
    """

    threshold: float
    target_precision: float
    oos_prior: float
    precision: float
    coverage: float
    oos_answered: float | None
    in_scope_rows: int
    oos_rows: int
    met_target: bool
    floor: float | None = None  # the right-answers floor, when too few negatives set it
    pseudo_oos_rows: int = 0  # of `oos_rows`: calibration rows scored without their intent
    score: str = MAX_SOFTMAX  # what `threshold` is compared with (`bundle_runtime.handoff_score`)
    # With `auto`: each score's AUROC of in-scope against negative calibration rows, the higher
    # one chosen (None when one score was asked for).
    separation: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def fit_handoff_threshold(
    in_scope: Sequence[tuple[float, bool]],
    oos: Sequence[float],
    *,
    target_precision: float = DEFAULT_HANDOFF_PRECISION,
    oos_prior: float = DEFAULT_OOS_PRIOR,
    pseudo_oos: Sequence[float] = (),
    score: str = MAX_SOFTMAX,
) -> HandoffCalibration:
    """The lowest threshold whose estimated answered precision reaches `target_precision`.

    `in_scope`: (confidence, intent right) per in-scope row, the confidence -inf where the model
    predicted out-of-scope; `oos`: the confidence per out-of-scope row (-inf likewise). Rates
    are measured per group and mixed with `oos_prior`, so that a calibration set with many or
    few negatives gives the same answer. Without negatives the precision is over in-scope rows
    alone (the threshold then only removes uncertain answers). When no threshold reaches the
    target with at least MIN_COVERAGE of in-scope rows answered, the most precise one that does
    is taken and `met_target` is False. With fewer than MIN_NEGATIVES negatives the threshold
    is raised to `floor` (see KEEP_RIGHT) where that is higher. `pseudo_oos`: confidences of
    pseudo-out-of-scope rows (`pseudo_oos_confidences`), negatives alongside `oos`; the floor
    still looks at the real ones only. `score` names what the values are (a probability or an
    energy, `bundle_runtime.handoff_score`); the rule is the same for both, the lowest
    candidate (every row with a finite value answered) being 0 or the lowest value below it.
    """
    if not in_scope:
        raise ValueError("calibrating the handoff threshold needs in-scope rows")
    if not 0.0 < target_precision <= 1.0 or not 0.0 <= oos_prior < 1.0:
        raise ValueError("target_precision must be in (0, 1] and oos_prior in [0, 1)")
    real = len(oos)
    oos = [*oos, *pseudo_oos]
    prior = oos_prior if oos else 0.0
    conf = np.array([c for c, _ in in_scope], dtype=np.float64)
    right_conf = np.sort(conf[np.array([ok for _, ok in in_scope], dtype=bool)])
    conf, neg = np.sort(conf), np.sort(np.array(oos, dtype=np.float64))

    def share_at_least(sorted_values: npt.NDArray[np.float64], t: float, n: int) -> float:
        return float(len(sorted_values) - np.searchsorted(sorted_values, t, side="left")) / n

    def rates(t: float) -> tuple[float, float, float | None]:
        answered = share_at_least(conf, t, len(conf))
        right = share_at_least(right_conf, t, len(conf))
        return answered, right, share_at_least(neg, t, len(neg)) if len(neg) else None

    def precision(t: float) -> float:
        answered, right, wrong_oos = rates(t)
        denominator = (1 - prior) * answered + prior * (wrong_oos or 0.0)
        return (1 - prior) * right / denominator if denominator > 0 else 1.0

    values = np.concatenate([conf, neg])
    finite = np.unique(values[np.isfinite(values)]).tolist()
    lowest = min(0.0, finite[0]) if finite else 0.0
    candidates = [lowest, *finite]
    usable = [t for t in candidates if rates(t)[0] >= MIN_COVERAGE] or [lowest]
    meeting = [t for t in usable if precision(t) >= target_precision]
    threshold = meeting[0] if meeting else max(usable, key=precision)
    floor = None
    if real < MIN_NEGATIVES and len(right_conf) >= FLOOR_ROWS:
        floor = float(np.quantile(right_conf, 1.0 - KEEP_RIGHT, method="lower"))
        threshold = max(threshold, floor)
    answered, _, wrong_oos = rates(threshold)
    return HandoffCalibration(
        threshold=threshold,
        target_precision=target_precision,
        oos_prior=prior,
        precision=precision(threshold),
        coverage=answered,
        oos_answered=wrong_oos,
        in_scope_rows=len(conf),
        oos_rows=len(neg),
        met_target=bool(meeting),
        floor=floor,
        pseudo_oos_rows=len(pseudo_oos),
        score=score,
    )


def calibrate_logits(
    logits: Tensor,
    gold: Sequence[int],
    negatives: Tensor | None,
    *,
    oos: int | None,
    score: str = AUTO,
    target_precision: float = DEFAULT_HANDOFF_PRECISION,
    oos_prior: float = DEFAULT_OOS_PRIOR,
    pseudo_oos: bool = True,
    seed: int = 0,
) -> HandoffCalibration:
    """The handoff threshold from temperature-scaled intent logits: `logits` [N, C] of the
    in-scope calibration rows with their `gold` intents, `negatives` [M, C] of the rows the bot
    should not answer (out-of-scope, out-of-domain; None: none). With `pseudo_oos` and fewer
    than MIN_NEGATIVES negatives, the in-scope rows also join them scored without their
    intents (`pseudo_oos_confidences`, folds from `seed`).

    `score` is one of `bundle_runtime.handoff_score.HANDOFF_SCORES`, or `auto`: each score is
    fitted and the one whose values separate the in-scope rows from the negatives best (AUROC,
    pseudo-out-of-scope rows included) is kept, max-softmax on a tie or without negatives. An
    energy score is only as good as the logits are trained: on a small, briefly trained model
    it separated out-of-scope messages worse than chance (bench/README), on CLINC150's full
    run far better than max-softmax.
    """
    candidates = list(HANDOFF_SCORES) if score == AUTO else [score]
    fits: dict[str, tuple[HandoffCalibration, float | None]] = {}
    for name in candidates:
        pred, _, values = intent_scores(logits.double().numpy(), name, oos)
        negative = (
            intent_scores(negatives.double().numpy(), name, oos)[2]
            if negatives is not None and negatives.shape[0]
            else []
        )
        pseudo: list[float] = []
        if pseudo_oos and len(negative) < MIN_NEGATIVES and len(set(gold)) >= 2:
            pseudo = pseudo_oos_confidences(logits, gold, oos=oos, seed=seed, score=name)
        fit = fit_handoff_threshold(
            [(v, p == g) for v, p, g in zip(values, pred, gold, strict=True)],
            negative,
            target_precision=target_precision,
            oos_prior=oos_prior,
            pseudo_oos=pseudo,
            score=name,
        )
        against = [*negative, *pseudo]
        fits[name] = (
            fit,
            roc_auc([*values, *against], [1.0] * len(values) + [0.0] * len(against))
            if against
            else None,
        )
    if score != AUTO:
        return fits[score][0]
    separation = {name: auroc for name, (_, auroc) in fits.items() if auroc is not None}
    better = len(separation) == len(fits) and separation[ENERGY] > separation[MAX_SOFTMAX]
    best = ENERGY if better else MAX_SOFTMAX
    return replace(fits[best][0], separation={k: round(v, 4) for k, v in separation.items()})


# ------------------------------------------------------------------------- pseudo-out-of-scope

PSEUDO_OOS_FOLDS = 5


def pseudo_oos_confidences(
    logits: Tensor,
    gold: Sequence[int],
    *,
    oos: int | None = None,
    folds: int = PSEUDO_OOS_FOLDS,
    seed: int = 0,
    score: str = MAX_SOFTMAX,
) -> list[float]:
    """Each in-scope row's confidence as if its intent were unknown to the bot.

    The intents present in `gold` (less `oos`) are dealt at random (`seed`) into `folds` groups,
    each held out in turn: a row of a held-out intent is scored (`score`: the top softmax
    probability or the energy, `bundle_runtime.handoff_score`) over the columns of the intents
    that are not held out, so its score is the one the bot would have on a message of a subject
    it was never given, next to subjects it knows. The student did learn
    these intents, so this approximates (it does not replace) real out-of-scope messages; it is
    what calibration has where the data holds none. -inf where the row's top remaining intent
    is `oos` (handed off at any threshold). `logits` [N, C] are the temperature-scaled ones.
    """
    if logits.shape[0] != len(gold):
        raise ValueError("pseudo_oos_confidences needs one gold intent per row of logits")
    if folds < 2:
        raise ValueError("pseudo-out-of-scope needs at least two folds of intents")
    intents = sorted({g for g in gold if g != oos})
    random.Random(seed).shuffle(intents)
    fold_of = {intent: i % folds for i, intent in enumerate(intents)}
    out = [-math.inf] * len(gold)
    for fold in range(min(folds, len(intents))):
        held = [c for c, f in fold_of.items() if f == fold]
        rows = [i for i, g in enumerate(gold) if fold_of.get(g) == fold]
        if not rows or len(held) >= logits.shape[1]:
            continue
        masked = logits[rows].clone()
        masked[:, held] = -math.inf
        _, _, values = intent_scores(masked.double().numpy(), score, oos)
        for i, value in zip(rows, values, strict=True):
            out[i] = value
    return [out[i] for i, g in enumerate(gold) if g != oos]
