"""Curriculum tiers of stage 1: difficulty from the teacher's margin, equal tiers, easy-first
epochs that still visit every row once, and an unchanged resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from distill_worker.config import DistillConfig
from distill_worker.data.curriculum import assign_tiers, difficulty
from distill_worker.data.examples import IntentExample
from distill_worker.stages.training import epoch_order
from tests.fixtures.tiny_student import CONFIG, run_encoder, same_state, tiny_student


def example(margin: float, length: int = 5, label: int = 0) -> IntentExample:
    return IntentExample(input_ids=[1] * length, label=label, teacher_logits=[margin, 0.0, 0.0])


def test_difficulty_is_the_teachers_doubt() -> None:
    sure, unsure = difficulty(example(8.0)), difficulty(example(0.1))
    assert 0.0 <= sure < 0.01 and 0.9 < unsure <= 1.0
    assert difficulty(IntentExample(input_ids=[1, 2], label=0)) == 0.5  # no teacher view


def test_tiers_are_equal_sized_and_rank_by_difficulty_then_length() -> None:
    rows = [example(m) for m in (5.0, 0.2, 3.0, 1.0, 0.5, 4.0)]
    assert assign_tiers(rows, 3) == [0, 2, 1, 1, 2, 0]
    same_margin = [example(2.0, length=n) for n in (9, 3, 6)]
    assert assign_tiers(same_margin, 3) == [2, 0, 1]  # longer is harder
    assert assign_tiers(rows, 1) == [0] * len(rows)  # 1 tier: no curriculum


def test_every_tier_holds_every_intent_in_its_share() -> None:
    # Intent 1's rows are all surer than intent 0's: ranked together, each intent would fill
    # tiers of its own; ranked within the intent, each tier gets a third of each.
    rows = [example(8.0 - k * 0.1, label=1) for k in range(6)]
    rows += [example(1.0 - k * 0.1, label=0) for k in range(6)]
    rows += [IntentExample(input_ids=[1, 2], label=-1)] * 3  # unlabelled: a group of their own
    tiers = assign_tiers(rows, 3)
    for label in (0, 1):
        assert [t for t, r in zip(tiers, rows, strict=True) if r.label == label] == [
            0,
            0,
            1,
            1,
            2,
            2,
        ]
    assert tiers[12:] == [0, 1, 2]


def test_curriculum_epochs_go_easy_to_hard_then_shuffle() -> None:
    tiers = [2, 0, 1, 0, 2, 1, 0, 1, 2]
    first = epoch_order(len(tiers), seed=3, epoch=0, tiers=tiers, curriculum_epochs=1)
    assert sorted(first) == list(range(len(tiers)))  # every row once
    assert [tiers[i] for i in first] == sorted(tiers)  # tier by tier
    assert first == epoch_order(len(tiers), seed=3, epoch=0, tiers=tiers, curriculum_epochs=1)
    later = epoch_order(len(tiers), seed=3, epoch=1, tiers=tiers, curriculum_epochs=1)
    assert later == epoch_order(len(tiers), seed=3, epoch=1)  # plain shuffle after it


def test_stage1_with_a_curriculum_trains_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    config = replace(CONFIG, checkpoint_every=2, curriculum_tiers=3, curriculum_epochs=1)
    full, metrics = run_encoder(tmp_path / "a", config, tiny_student())
    assert metrics["completed"] and metrics["steps_run"] == 6  # same steps as without
    run_encoder(tmp_path / "b", config, tiny_student(), max_steps=2)  # stops mid-epoch 0
    resumed, _ = run_encoder(tmp_path / "b", config, tiny_student(seed=9))
    assert same_state(full.student.state_dict(), resumed.student.state_dict())
    plain, _ = run_encoder(tmp_path / "c", replace(CONFIG, curriculum_tiers=1), tiny_student())
    assert not same_state(full.student.state_dict(), plain.student.state_dict())


def test_bad_curriculum_settings_are_refused() -> None:
    assert (DistillConfig().curriculum_tiers, DistillConfig().curriculum_epochs) == (3, 1)
    with pytest.raises(ValueError, match="curriculum_tiers"):
        DistillConfig.from_dict({"curriculum_tiers": 0})
    with pytest.raises(ValueError, match="curriculum_epochs"):
        DistillConfig.from_dict({"curriculum_epochs": -1})
