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

from distill_worker.data.building import SourceTokenizer, stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance  # noqa: E402
from distill_worker.run_state import RunData  # noqa: E402
from distill_worker.stages.calibrate import (  # noqa: E402
    MIN_COVERAGE,
    fit_handoff_threshold,
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
    assert fit.in_scope_rows == 6 and fit.oos_rows == 2 + 2  # 2 oos calibration rows + 2 ood
    assert 0.0 <= fit.threshold <= 1.0 and fit.target_precision == 0.9
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
