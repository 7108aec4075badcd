"""The distillation losses against straightforward torch references, their edge cases, and the
dynamic loss weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_worker.stages.losses import (
    DynamicLossWeights,
    feature_mse,
    kto_loss,
    logit_kd,
    reward_bce,
    sequence_ce,
    sequence_logprob,
    task_ce,
    token_kd_topk,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_logit_kd_matches_kl_div_with_temperature() -> None:
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    tau = 3.0
    ref = (
        F.kl_div(
            F.log_softmax(s / tau, -1),
            F.log_softmax(t / tau, -1),
            reduction="batchmean",
            log_target=True,
        )
        * tau**2
    )
    torch.testing.assert_close(logit_kd(s, t, tau), ref)
    assert float(logit_kd(t, t, tau)) == pytest.approx(0.0, abs=1e-6)


def test_feature_mse_goes_through_the_projection() -> None:
    proj = nn.Linear(4, 6)
    s, t = torch.randn(3, 4), torch.randn(3, 6)
    torch.testing.assert_close(feature_mse(s, t, proj), F.mse_loss(proj(s), t))


def test_task_ce_ignores_unlabelled_rows_and_survives_none() -> None:
    logits, labels = torch.randn(6, 4), torch.tensor([0, -1, 3, 2, -1, 1])
    torch.testing.assert_close(
        task_ce(logits, labels), F.cross_entropy(logits, labels, ignore_index=-1)
    )
    none = torch.full((6,), -1)
    leaf = logits.clone().requires_grad_(True)
    loss = task_ce(leaf, none)
    loss.backward()
    assert float(loss.detach()) == 0.0 and leaf.grad is not None and not leaf.grad.isnan().any()


def test_token_kd_with_k_equal_v_is_the_full_kl() -> None:
    b, t, v = 2, 5, 9
    student, teacher = torch.randn(b, t, v), torch.randn(b, t, v)
    ids = torch.stack([torch.randperm(v) for _ in range(b * t)]).view(b, t, v)
    logprobs = F.log_softmax(teacher, -1).gather(-1, ids)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    per_pos = F.kl_div(
        F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="none", log_target=True
    ).sum(-1)
    ref = (per_pos * mask).sum() / mask.sum()
    torch.testing.assert_close(token_kd_topk(student, ids, logprobs, mask), ref)


def test_token_kd_restricts_and_renormalises_over_the_k_ids() -> None:
    student = torch.randn(1, 2, 10)
    ids = torch.tensor([[[3, 7, 1], [0, 2, 9]]])
    logprobs = torch.tensor([[[-0.5, -1.5, -3.0], [-0.1, -2.5, -4.0]]])
    expected = []
    for pos in range(2):
        p = F.softmax(logprobs[0, pos], -1)
        q = F.log_softmax(student[0, pos, ids[0, pos]], -1)
        expected.append((p * (p.log() - q)).sum())
    got = token_kd_topk(student, ids, logprobs, torch.ones(1, 2))
    torch.testing.assert_close(got, torch.stack(expected).mean())


def test_token_kd_padding_slots_and_masked_positions_change_nothing() -> None:
    student = torch.randn(1, 3, 10, requires_grad=True)
    ids = torch.tensor([[[3, 7], [0, 2], [4, 5]]])
    logprobs = torch.tensor([[[-0.5, -1.5], [-0.1, -2.5], [-0.3, -0.9]]])
    base = token_kd_topk(student, ids, logprobs, torch.tensor([[1, 1, 0]]))
    padded_ids = torch.cat([ids, torch.zeros(1, 3, 1, dtype=torch.long)], -1)
    padded_lp = torch.cat([logprobs, torch.full((1, 3, 1), -math.inf)], -1)
    padded_lp[0, 2] = -math.inf  # a fully padded, masked position must not make NaNs
    got = token_kd_topk(student, padded_ids, padded_lp, torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(got, base)
    got.backward()
    assert student.grad is not None and not student.grad.isnan().any()
    assert float(student.grad[0, 2].abs().sum()) == 0.0


def test_sequence_ce_with_unit_weights_is_masked_cross_entropy() -> None:
    logits, targets = torch.randn(3, 4, 11), torch.randint(0, 11, (3, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    ref = F.cross_entropy(logits.view(-1, 11), targets.masked_fill(mask == 0, -100).view(-1))
    torch.testing.assert_close(sequence_ce(logits, targets, mask, torch.ones(3)), ref)


def test_sequence_ce_weights_scale_each_example() -> None:
    logits, targets = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    weights = torch.tensor([0.5, 2.0])
    ref = ((ce * mask) * weights[:, None]).sum() / mask.sum()
    torch.testing.assert_close(sequence_ce(logits, targets, mask, weights), ref)
    zero = sequence_ce(logits, targets, mask, torch.zeros(2))
    assert float(zero) == 0.0


def test_sequence_logprob_sums_masked_token_logprobs() -> None:
    logits, targets = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    lp = F.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(sequence_logprob(logits, targets, mask), (lp * mask).sum(-1))


def test_reward_bce_only_on_labelled_rows() -> None:
    logits, labels = torch.randn(5), torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    labelled = torch.tensor([True, True, False, True, False])
    ref = F.binary_cross_entropy_with_logits(logits[labelled], labels[labelled])
    torch.testing.assert_close(reward_bce(logits, labels, labelled), ref)
    assert float(reward_bce(logits, labels, torch.zeros(5, dtype=torch.bool))) == 0.0


def test_kto_loss_matches_its_formula() -> None:
    policy = torch.tensor([-3.0, -5.0, -2.0, -4.0], requires_grad=True)
    reference = torch.tensor([-4.0, -4.5, float("nan"), -3.0])
    desirable = torch.tensor([True, False, True, False])
    labelled = torch.tensor([True, True, False, True])
    beta = 0.5
    r = torch.tensor([1.0, -0.5, 0.0, -1.0])
    z = max(0.0, (1.0 - 0.5 - 1.0) / 3)  # batch KL estimate over labelled rows, clamped at 0
    expected = (
        (1 - torch.sigmoid(beta * (r[0] - z)))
        + (1 - torch.sigmoid(beta * (z - r[1])))
        + (1 - torch.sigmoid(beta * (z - r[3])))
    ) / 3
    loss = kto_loss(policy, reference, desirable, labelled, beta)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert policy.grad is not None and not policy.grad.isnan().any()
    assert float(policy.grad[0]) < 0 < float(policy.grad[1])  # good up, bad down
    assert float(policy.grad[2]) == 0.0


def test_kto_reference_point_is_detached_and_clamped() -> None:
    policy = torch.tensor([0.0, 2.0], requires_grad=True)
    reference = torch.zeros(2)
    loss = kto_loss(policy, reference, torch.tensor([True, True]), torch.tensor([True, True]), 1.0)
    z = 1.0  # mean log-ratio, no gradient through it
    expected = (
        (1 - torch.sigmoid(torch.tensor(-z))) + (1 - torch.sigmoid(torch.tensor(2 - z)))
    ) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert policy.grad is not None
    s0, s1 = torch.sigmoid(torch.tensor(-1.0)), torch.sigmoid(torch.tensor(1.0))
    torch.testing.assert_close(policy.grad, -torch.stack([s0 * (1 - s0), s1 * (1 - s1)]) / 2)


# ------------------------------------------------------------------------------ loss weights


START = {"feature": 0.7, "intent_kd": 0.2, "task_ce": 0.1}


def test_equal_progress_keeps_the_start_weights() -> None:
    weights = DynamicLossWeights(START)
    for step in range(20):
        out = weights.update({k: 2.0 * 0.9**step for k in START})
    assert out == pytest.approx(START)


def test_a_stalled_objective_gains_weight_and_weights_sum_to_one() -> None:
    weights = DynamicLossWeights(START, mix=0.5)
    for step in range(50):
        out = weights.update(
            {"feature": 3.0 * 0.9**step, "intent_kd": 1.0 * 0.9**step, "task_ce": 1.0}
        )
        assert sum(out.values()) == pytest.approx(1.0)
    assert out["task_ce"] > START["task_ce"]
    assert out["feature"] < START["feature"] and out["feature"] >= 0.5 * START["feature"]


def test_weights_are_deterministic_and_restorable() -> None:
    losses = [
        {"feature": 1.0 / (i + 1), "intent_kd": 0.5, "task_ce": 2.0 - 0.01 * i} for i in range(10)
    ]
    a, b = DynamicLossWeights(START), DynamicLossWeights(START)
    for step in losses[:5]:
        a.update(step)
        b.update(step)
    c = DynamicLossWeights(START)
    c.load_state_dict(a.state_dict())
    for step in losses[5:]:
        assert a.update(step) == b.update(step) == c.update(step)


def test_missing_objective_keeps_its_state_and_disabled_weights_stay() -> None:
    weights = DynamicLossWeights(START)
    weights.update({"feature": 1.0})
    assert weights.ratios() == {"feature": 1.0, "intent_kd": 1.0, "task_ce": 1.0}
    static = DynamicLossWeights({"a": 2.0, "b": 2.0}, enabled=False)
    assert static.update({"a": 5.0, "b": 0.1}) == {"a": 0.5, "b": 0.5}
    assert static.update({"a": 5.0, "b": 0.01}) == {"a": 0.5, "b": 0.5}
    with pytest.raises(KeyError):
        weights.update({"nope": 1.0})
    with pytest.raises(ValueError):
        DynamicLossWeights({"a": 0.0})
