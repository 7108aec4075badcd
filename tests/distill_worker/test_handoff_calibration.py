"""The handoff threshold: chosen on a run's calibration rows for a target answered precision,
with out-of-scope and out-of-domain rows as negatives, and never on the rows a run reports on."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tokenizers import Tokenizer  # noqa: E402
from tokenizers.models import WordLevel  # noqa: E402
from tokenizers.pre_tokenizers import Whitespace  # noqa: E402
from torch import Tensor  # noqa: E402

from distill_worker.data.building import SourceTokenizer, stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance  # noqa: E402
from distill_worker.run_state import RunData  # noqa: E402
from distill_worker.stages.calibrate import (  # noqa: E402
    MIN_COVERAGE,
    MIN_NEGATIVES,
    calibrate_logits,
    fit_handoff_threshold,
    pseudo_oos_confidences,
)
from distill_worker.stages.run_eval import calibrate_handoff  # noqa: E402
from tests.fixtures.tiny_student import tiny_student  # noqa: E402


def _answered(in_scope: list[tuple[float, bool]], oos: list[float], t: float, prior: float):
    answered = sum(c >= t for c, _ in in_scope) / len(in_scope)
    right = sum(c >= t and ok for c, ok in in_scope) / len(in_scope)
    wrong = sum(c >= t for c in oos) / len(oos) if oos else 0.0
    p = prior if oos else 0.0
    return answered, (1 - p) * right / ((1 - p) * answered + p * wrong)


def _model_like(seed: int = 0) -> tuple[list[tuple[float, bool]], list[float]]:
    """Confidences where right answers are surer than wrong ones, and out-of-scope rows
    surer than nothing but less sure than in-scope ones: what a trained classifier gives."""
    rng = random.Random(seed)
    in_scope = []
    for _ in range(600):
        right = rng.random() < 0.9
        in_scope.append(
            (min(1.0, rng.betavariate(8, 1.5) if right else rng.betavariate(2, 2)), right)
        )
    return in_scope, [rng.betavariate(2, 3) for _ in range(300)]


def test_the_lowest_threshold_that_reaches_the_target_is_taken() -> None:
    in_scope, oos = _model_like()
    fit = fit_handoff_threshold(in_scope, oos, target_precision=0.95, oos_prior=0.1)
    assert fit.met_target and fit.precision >= 0.95
    coverage, precision = _answered(in_scope, oos, fit.threshold, 0.1)
    assert fit.coverage == pytest.approx(coverage) and fit.precision == pytest.approx(precision)
    # Every lower candidate misses the target: the bot answers as much as the target allows.
    lower = [c for c, _ in in_scope if c < fit.threshold] + [c for c in oos if c < fit.threshold]
    assert lower and all(_answered(in_scope, oos, t, 0.1)[1] < 0.95 for t in lower)
    assert fit.in_scope_rows == 600 and fit.oos_rows == 300
    assert 0 < fit.oos_answered < 1  # some negatives are still answered: reported, not hidden


def test_negatives_and_a_stricter_target_raise_the_threshold() -> None:
    in_scope, oos = _model_like(1)
    alone = fit_handoff_threshold(in_scope, [], target_precision=0.95)
    with_oos = fit_handoff_threshold(in_scope, oos, target_precision=0.95, oos_prior=0.3)
    stricter = fit_handoff_threshold(in_scope, oos, target_precision=0.98, oos_prior=0.3)
    assert alone.oos_prior == 0.0 and alone.oos_answered is None
    assert alone.threshold <= with_oos.threshold <= stricter.threshold
    assert with_oos.threshold > alone.threshold


def test_rows_predicted_out_of_scope_are_never_answered() -> None:
    in_scope = [(0.9, True)] * 8 + [(-math.inf, False)] * 2
    fit = fit_handoff_threshold(in_scope, [-math.inf] * 5, target_precision=0.9)
    assert fit.threshold == 0.0 and fit.coverage == pytest.approx(0.8)
    assert fit.oos_answered == 0.0 and fit.precision == 1.0


def test_an_unreachable_target_keeps_most_traffic_answered_and_says_so() -> None:
    rng = random.Random(2)
    # Confidence says nothing about being right: no threshold reaches 99%.
    in_scope = [(rng.random(), rng.random() < 0.7) for _ in range(400)]
    fit = fit_handoff_threshold(in_scope, [], target_precision=0.99)
    assert not fit.met_target and fit.coverage >= MIN_COVERAGE


@pytest.mark.parametrize(
    ("in_scope", "target", "prior"),
    [([], 0.9, 0.1), ([(0.5, True)], 0.0, 0.1), ([(0.5, True)], 0.9, 1.0)],
)
def test_bad_arguments_are_refused(in_scope: list, target: float, prior: float) -> None:
    with pytest.raises(ValueError):
        fit_handoff_threshold(in_scope, [0.1], target_precision=target, oos_prior=prior)


WORDS = ["[PAD]", "[UNK]", "order", "where", "is", "my", "refund", "money", "back", "weather"]


def _source(tmp_path: Path) -> SourceTokenizer:
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return SourceTokenizer(path, max_tokens=16, context_turns=0)


def test_calibration_reads_the_calibration_rows_and_the_negatives_only(tmp_path: Path) -> None:
    labels = ["oos", "refund", "track_order"]
    rows = [Utterance(text="where is my order", intent="track_order") for _ in range(6)]
    rows += [Utterance(text="my money back", intent="refund") for _ in range(6)]
    rows += [Utterance(text="weather", intent="oos") for _ in range(4)]
    report, calibration = stratified_split(rows, 0.5, 1)
    data = RunData(
        train=[],
        dev=rows,
        labels=labels,
        oos_label="oos",
        adversarial={},
        champion=None,
        warm_start_skipped=None,
        calibration=calibration,
        report=report,
        ood=[Utterance(text="is weather"), Utterance(text="weather weather")],
    )
    student = tiny_student()
    fit = calibrate_handoff(student, _source(tmp_path), data, target_precision=0.9, oos_prior=0.1)
    assert fit is not None
    # 2 oos calibration rows + 2 ood are too few negatives: the 6 in-scope rows, scored without
    # their intents, join them as pseudo-out-of-scope rows.
    assert fit.in_scope_rows == 6 and fit.oos_rows == 2 + 2 + 6 and fit.pseudo_oos_rows == 6
    assert 0.0 <= fit.threshold <= 1.0 and fit.target_precision == 0.9
    real_only = calibrate_handoff(
        student, _source(tmp_path), data, target_precision=0.9, oos_prior=0.1, pseudo_oos=False
    )
    assert real_only is not None and (real_only.oos_rows, real_only.pseudo_oos_rows) == (4, 0)
    # Enough real negatives: no pseudo-out-of-scope rows.
    many = RunData(**{**vars(data), "ood": [Utterance(text="weather")] * MIN_NEGATIVES})
    enough = calibrate_handoff(
        student, _source(tmp_path), many, target_precision=0.9, oos_prior=0.1
    )
    assert enough is not None and enough.pseudo_oos_rows == 0
    assert enough.oos_rows == 2 + MIN_NEGATIVES
    # No calibration rows: nothing to calibrate on, the configured threshold stays.
    empty = RunData(**{**vars(data), "calibration": []})
    assert (
        calibrate_handoff(student, _source(tmp_path), empty, target_precision=0.9, oos_prior=0.1)
        is None
    )


def test_too_few_negatives_raise_the_threshold_to_the_right_answers_floor() -> None:
    in_scope, oos = _model_like(3)
    few = fit_handoff_threshold(in_scope, oos[:5], target_precision=0.95)
    right = sorted(c for c, ok in in_scope if ok)
    assert few.floor == right[int(0.01 * (len(right) - 1))]  # 1% of right answers fall under it
    assert few.threshold >= few.floor
    assert (
        sum(c < few.threshold for c in right) <= 0.01 * len(right) + 1 or few.threshold > few.floor
    )
    # Enough negatives: their answered rate sets the threshold, no floor.
    assert fit_handoff_threshold(in_scope, oos, target_precision=0.95).floor is None
    # Too few right answers to measure a 1% quantile on: no floor either.
    assert fit_handoff_threshold(in_scope[:60], oos[:5], target_precision=0.95).floor is None


def test_pseudo_out_of_scope_scores_each_row_without_its_intent() -> None:
    # 10 intents, 3 rows each, each row sure of its own intent and unsure of the rest.
    gold = [i // 3 for i in range(30)]
    logits = torch.full((30, 10), 0.0)
    for row, intent in enumerate(gold):
        logits[row, intent] = 6.0
        logits[row, (intent + 1) % 10] = 1.0  # a runner-up
    sure = torch.softmax(logits, dim=-1).max(dim=-1).values
    pseudo = pseudo_oos_confidences(logits, gold, folds=5, seed=3)
    assert len(pseudo) == 30
    # Without its own intent a row is far less sure than with it, and never surer.
    assert all(p < 0.5 < float(s) for p, s in zip(pseudo, sure, strict=True))
    # The folds are a seeded draw: the same seed, the same scores; another, others.
    assert pseudo_oos_confidences(logits, gold, folds=5, seed=3) == pseudo
    assert pseudo_oos_confidences(logits, gold, folds=5, seed=4) != pseudo


def test_pseudo_out_of_scope_skips_oos_rows_and_hands_off_an_oos_runner_up() -> None:
    gold = [0, 1, 2, 3, 3]  # intent 3 is `oos`
    logits = torch.tensor(
        [
            [5.0, 0.0, 0.0, 4.0],  # intent 0; without it, `oos` is on top: handed off
            [0.0, 5.0, 2.0, 0.0],
            [0.0, 2.0, 5.0, 0.0],
            [0.0, 0.0, 0.0, 5.0],
            [0.0, 0.0, 0.0, 5.0],
        ]
    )
    pseudo = pseudo_oos_confidences(logits, gold, oos=3, folds=3, seed=0)
    assert len(pseudo) == 3 and pseudo[0] == -math.inf
    assert all(0.0 < p < 1.0 for p in pseudo[1:])
    with pytest.raises(ValueError, match="one gold intent per row"):
        pseudo_oos_confidences(logits, gold[:2])
    with pytest.raises(ValueError, match="two folds"):
        pseudo_oos_confidences(logits, gold, folds=1)


def test_pseudo_out_of_scope_rows_are_negatives_but_the_floor_counts_real_ones() -> None:
    in_scope, oos = _model_like(4)
    pseudo = oos[:200]
    fit = fit_handoff_threshold(in_scope, oos[:5], pseudo_oos=pseudo, target_precision=0.95)
    assert fit.oos_rows == 205 and fit.pseudo_oos_rows == 200
    assert fit.floor is not None and fit.threshold >= fit.floor  # 5 real negatives: floor kept
    # As negatives they weigh like real ones: the same threshold as 205 real negatives.
    real = fit_handoff_threshold(in_scope, oos[:5] + pseudo, target_precision=0.95)
    assert real.floor is None and real.threshold <= fit.threshold
    assert max(real.threshold, fit.floor) == fit.threshold


def test_energy_scores_calibrate_with_the_same_rule_in_logit_units(tmp_path: Path) -> None:
    # Energies are logits: shift the model-like confidences below zero and the threshold moves
    # with them; the lowest candidate answers every row, however low.
    in_scope, oos = _model_like(5)
    fit = fit_handoff_threshold(in_scope, oos, target_precision=0.95, oos_prior=0.1)
    shifted = fit_handoff_threshold(
        [(c - 7.0, ok) for c, ok in in_scope],
        [c - 7.0 for c in oos],
        target_precision=0.95,
        oos_prior=0.1,
        score="energy",
    )
    assert shifted.threshold == pytest.approx(fit.threshold - 7.0)
    assert (shifted.precision, shifted.coverage) == (fit.precision, fit.coverage)
    assert shifted.score == "energy" and shifted.as_dict()["score"] == "energy"
    everything = fit_handoff_threshold([(-9.0, True), (-8.0, True)], [], target_precision=0.5)
    assert everything.threshold == -9.0 and everything.coverage == 1.0


def test_pseudo_out_of_scope_energy_is_over_the_intents_its_fold_leaves() -> None:
    gold = [i // 2 for i in range(12)]  # 6 intents, 2 rows each; no oos
    logits = torch.full((12, 6), -2.0)
    for row, intent in enumerate(gold):
        logits[row, intent] = 5.0
    energy = pseudo_oos_confidences(logits, gold, folds=3, seed=1, score="energy")
    # Each row's own intent (and its fold's other one) is masked: four columns at -2 remain.
    assert energy == pytest.approx([math.log(4 * math.exp(-2.0))] * 12)
    probs = pseudo_oos_confidences(logits, gold, folds=3, seed=1)
    assert probs == pytest.approx([0.25] * 12)


def test_calibrating_on_energy_scores_the_student_with_it(tmp_path: Path) -> None:
    labels = ["oos", "refund", "track_order"]
    rows = [Utterance(text="where is my order", intent="track_order") for _ in range(6)]
    rows += [Utterance(text="my money back", intent="refund") for _ in range(6)]
    data = RunData(
        train=[], dev=rows, labels=labels, oos_label="oos", adversarial={}, champion=None,
        warm_start_skipped=None, calibration=rows, report=[], ood=[Utterance(text="weather")],
    )  # fmt: skip
    student = tiny_student()
    source = _source(tmp_path)
    fit = calibrate_handoff(
        student, source, data, target_precision=0.9, oos_prior=0.1, score="energy"
    )
    assert fit is not None and fit.score == "energy" and fit.pseudo_oos_rows == 12
    # The threshold is one of the scores it was chosen from: here the energies of the rows.
    student.eval()
    ids = source.ids([r.turns() for r in [*rows, *data.ood]])
    width = max(map(len, ids))
    with torch.no_grad():
        logits = student.encode(
            torch.tensor([i + [0] * (width - len(i)) for i in ids]),
            torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids]),
        )[2]
    energies = torch.logsumexp(logits[:, 1:], dim=-1).tolist()  # column 0 is `oos`
    predicted_oos = logits.argmax(dim=-1) == 0
    candidates = [e for e, o in zip(energies, predicted_oos.tolist(), strict=True) if not o]
    pseudo = pseudo_oos_confidences(logits[:12], [2] * 6 + [1] * 6, oos=0, score="energy")
    assert any(fit.threshold == pytest.approx(c, abs=1e-5) for c in [*candidates, *pseudo, 0.0])


def _separable(negative: list[float]) -> tuple[Tensor, list[int], Tensor]:
    """40 in-scope rows over 4 intents (column 4 is `oos`), each 6 logits ahead on its intent;
    60 negatives, each `negative` (5 logits, `oos` last) rolled over the 4 intents. Every row's
    top logit gets the same small spread, so that scores tie only where they should."""
    gold = [i % 4 for i in range(40)]
    logits = torch.zeros(40, 5)
    for row, intent in enumerate(gold):
        logits[row, intent] = 6.0 + 0.05 * (row % 7)
    intents = torch.stack([torch.tensor(negative[:4]).roll(i % 4) for i in range(60)])
    intents += 0.05 * (torch.arange(60) % 7).unsqueeze(1) * (intents > 0)
    return logits, gold, torch.cat([intents, torch.full((60, 1), negative[4])], dim=1)


def test_auto_keeps_the_score_that_tells_negatives_from_in_scope_rows_better() -> None:
    # Negatives with low logits but one intent well ahead: as probable as an in-scope row
    # under the softmax, far lower in energy.
    logits, gold, quiet = _separable([2.0, -4.0, -4.0, -4.0, -4.0])
    auto = calibrate_logits(logits, gold, quiet, oos=4, score="auto")
    assert auto.score == "energy" and auto.separation is not None
    assert auto.separation["energy"] > auto.separation["max-softmax"]
    energy = calibrate_logits(logits, gold, quiet, oos=4, score="energy")
    assert energy.separation is None and auto.threshold == energy.threshold
    # Negatives torn between two intents with high logits: high energy, low probability.
    logits, gold, torn = _separable([7.0, 7.0, 0.0, 0.0, 0.0])
    auto = calibrate_logits(logits, gold, torn, oos=4, score="auto")
    assert auto.score == "max-softmax" and auto.separation is not None
    assert auto.separation["max-softmax"] > auto.separation["energy"]
    # No negatives and no pseudo-out-of-scope rows: nothing to compare on, max-softmax.
    alone = calibrate_logits(logits, gold, None, oos=4, score="auto", pseudo_oos=False)
    assert alone.score == "max-softmax" and alone.separation == {}
