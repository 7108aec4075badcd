"""The handoff score (`bundle_runtime.handoff_score`): max-softmax and energy from intent logits,
the `oos` column's part in each, and which thresholds each accepts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bundle_runtime.handoff_score import ENERGY, MAX_SOFTMAX, check_handoff, intent_scores


def test_energy_is_the_log_sum_exp_of_the_in_scope_logits() -> None:
    logits = np.array([[4.0, 1.0, 0.0], [0.5, 0.4, 0.3], [-3.0, -2.0, 9.0]])
    pred, prob, energy = intent_scores(logits, ENERGY, oos=2)
    assert pred == [0, 0, 2]
    assert energy[0] == pytest.approx(math.log(math.exp(4.0) + math.exp(1.0)))
    assert energy[1] == pytest.approx(math.log(math.exp(0.5) + math.exp(0.4)))
    assert energy[2] == -math.inf  # predicted out-of-scope: handed off at any threshold
    # The probability stays the softmax over every column, `oos` included.
    assert prob[0] == pytest.approx(math.exp(4.0) / sum(math.exp(x) for x in logits[0]))
    # Without an out-of-scope intent, every column counts.
    _, _, every = intent_scores(logits[:1], ENERGY, oos=None)
    assert every[0] == pytest.approx(math.log(sum(math.exp(x) for x in logits[0])))


def test_energy_tells_a_flat_row_from_a_sure_one_where_the_softmax_cannot() -> None:
    # Both rows put intent 0 the same distance ahead, so the softmax gives both the same
    # probability; the second row's logits are all low (nothing the model knows fits it).
    logits = np.array([[8.0, 2.0, 2.0], [1.0, -5.0, -5.0]])
    _, _, softmax = intent_scores(logits, MAX_SOFTMAX, oos=None)
    _, _, energy = intent_scores(logits, ENERGY, oos=None)
    assert softmax[0] == pytest.approx(softmax[1])
    assert energy[0] - energy[1] == pytest.approx(7.0, abs=1e-3)


def test_max_softmax_is_the_predicted_intents_probability() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    pred, prob, score = intent_scores(logits, MAX_SOFTMAX, oos=1)
    assert pred == [0, 1] and score[0] == pytest.approx(prob[0])
    assert prob[0] == pytest.approx(1 / (1 + math.exp(-2.0))) and score[1] == -math.inf


def test_masked_columns_are_left_out_and_a_row_with_none_left_scores_minus_infinity() -> None:
    logits = np.array([[5.0, 2.0, 1.0], [-np.inf, -np.inf, -np.inf]])
    logits[0, 0] = -np.inf
    pred, _, energy = intent_scores(logits, ENERGY, oos=None)
    assert pred[0] == 1 and energy[0] == pytest.approx(math.log(math.exp(2.0) + math.exp(1.0)))
    assert energy[1] == -math.inf
    assert intent_scores(np.zeros((0, 3)), ENERGY, oos=None) == ([], [], [])


def test_bad_scores_shapes_and_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown handoff score 'margin'"):
        intent_scores(np.zeros((1, 2)), "margin", oos=None)
    with pytest.raises(ValueError, match="rows, intents"):
        intent_scores(np.zeros(3), ENERGY, oos=None)
    check_handoff(ENERGY, -4.5)  # energies are logits: any finite value
    check_handoff(MAX_SOFTMAX, 0.0)
    with pytest.raises(ValueError, match="not a probability"):
        check_handoff(MAX_SOFTMAX, 1.5)
    with pytest.raises(ValueError, match="finite"):
        check_handoff(ENERGY, math.inf)
    with pytest.raises(ValueError, match="unknown handoff score"):
        check_handoff("margin", 0.5)
