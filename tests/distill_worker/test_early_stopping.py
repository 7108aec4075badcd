"""Early stopping on a dev split, for both stages and the encoder teacher, on tiny real models.

The dev rows are the training contexts with every label moved to the next intent: the better
the model learns the training labels, the worse it scores on them, so the dev figures stop
improving after the first epoch and training must stop there, with that epoch's weights kept.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the stages need the `train` extra (torch)")
transformers = pytest.importorskip("transformers", reason="the teacher is a BertModel")


from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.examples import IntentExample, ReplyExample  # noqa: E402
from distill_worker.data.reply_dev import reply_dev  # noqa: E402
from distill_worker.data.run_teachers import teacher_epoch_line  # noqa: E402
from distill_worker.stages.decoder_stage import DecoderStage  # noqa: E402
from distill_worker.stages.early_stopping import EarlyStopping  # noqa: E402
from distill_worker.stages.encoder_stage import EncoderStage  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher  # noqa: E402
from tests.fixtures.tiny_student import (  # noqa: E402
    CONFIG,
    FEATURES,
    intent_examples,
    reply_examples,
    run_encoder,
    same_state,
    tiny_student,
)
from tests.fixtures.tiny_teacher import INTENTS, TEXTS, tiny_teacher  # noqa: E402

# 3 steps an epoch (24 examples, batches of 8); learns fast enough to move in one epoch.
FAST = replace(CONFIG, stage1_epochs=6, stage1_lr=1e-3, stage1_head_lr=1e-2, dynamic_weights=False)


def wrong_labels(examples: list[IntentExample]) -> list[IntentExample]:
    return [replace(e, label=(e.label + 1) % 3) for e in examples if e.label >= 0]


def stage1(
    tmp: Path, config: DistillConfig, dev: list[IntentExample], max_steps: int | None = None
) -> tuple[EncoderStage, dict[str, object]]:
    stage = EncoderStage(
        tiny_student(), config, intent_examples(), FEATURES, tmp / "s1.jsonl", tmp / "ck1", dev
    )
    stage.setup()
    metrics = stage.train(max_steps=max_steps)
    stage.cleanup()
    return stage, metrics


def trained(stage: EncoderStage) -> dict[str, torch.Tensor]:
    return {
        k: v
        for k, v in stage.student.state_dict().items()
        if k.startswith(("encoder.", "intent_head."))
    }


@pytest.mark.parametrize("patience", [1, 2])
def test_stage1_stops_when_dev_accuracy_stops_improving_and_keeps_the_best_epoch(
    tmp_path: Path, patience: int
) -> None:
    config = replace(FAST, stage1_patience=patience)
    stage, metrics = stage1(tmp_path / "es", config, wrong_labels(intent_examples()))
    assert metrics["stop_reason"] == "early_stop" and metrics["stopped_early"]
    early = metrics["early_stopping"]
    assert isinstance(early, dict)
    best = early["best_epoch"]
    assert metrics["epochs_run"] == best + patience < 6 and not metrics["completed"]
    assert early["kept"] == f"epoch {best}" and len(early["dev_history"]) == best + patience
    scores = [(h["dev_accuracy"], -h["dev_loss"]) for h in early["dev_history"]]
    assert max(scores) == scores[best - 1] and scores.index(max(scores)) == best - 1
    # The weights are the best epoch's: those of the same run stopped after its 3 * best steps.
    first, _ = stage1(tmp_path / "one", config, [], max_steps=3 * best)
    assert same_state(trained(stage), trained(first))
    accuracy, loss = stage.dev_figures()
    assert (accuracy, -loss) == pytest.approx(scores[best - 1], abs=1e-5)


def test_stage1_with_an_honest_dev_split_runs_its_epochs(tmp_path: Path) -> None:
    dev = [e for e in intent_examples() if e.label >= 0]
    _, metrics = stage1(tmp_path, replace(FAST, stage1_epochs=3), dev)
    assert metrics["completed"] and metrics["stop_reason"] is None and metrics["epochs_run"] == 3
    early = metrics["early_stopping"]
    assert isinstance(early, dict) and len(early["dev_history"]) == 3
    assert early["best_dev_accuracy"] == max(h["dev_accuracy"] for h in early["dev_history"])


def test_stage1_without_dev_rows_runs_every_epoch_with_the_last_weights(tmp_path: Path) -> None:
    _, metrics = run_encoder(tmp_path, FAST, tiny_student())
    assert metrics["completed"] and metrics["epochs_run"] == 6 and "early_stopping" not in metrics


def test_a_resumed_stage1_stops_where_the_uninterrupted_one_did(tmp_path: Path) -> None:
    config = replace(FAST, stage1_patience=2, checkpoint_every=2)
    dev = wrong_labels(intent_examples())
    full, full_metrics = stage1(tmp_path / "a", config, dev)
    _, part = stage1(tmp_path / "b", config, dev, max_steps=4)  # mid epoch 2
    assert part["stop_reason"] == "max_steps" and "early_stopping" not in part
    resumed, metrics = stage1(tmp_path / "b", config, dev)
    assert metrics["resumed_from"] == 4 and metrics["stop_reason"] == "early_stop"
    assert metrics["early_stopping"] == full_metrics["early_stopping"]
    assert same_state(trained(full), trained(resumed))
    # Once stopped, it stays stopped: a third start trains nothing and keeps epoch 1 again.
    again, metrics = stage1(tmp_path / "b", config, dev)
    assert metrics["steps_run"] == 0 and metrics["stop_reason"] == "early_stop"
    assert same_state(trained(full), trained(again))


def test_early_stopping_state_round_trips_and_breaks_ties_on_the_loss() -> None:
    early = EarlyStopping(patience=2)
    weights = {"w": torch.ones(2)}
    assert early.update(1, 0.5, 1.0, lambda: weights)
    weights["w"].add_(1.0)  # a later change does not touch the kept copy
    assert early.update(2, 0.5, 0.9, lambda: weights)  # same accuracy, lower loss: better
    assert not early.update(3, 0.5, 0.95, lambda: weights)
    assert not early.update(4, 0.4, 0.5, lambda: weights)
    assert early.exhausted and early.best_epoch == 2
    figures, best = early.state_dict()
    copy = EarlyStopping(patience=2)
    copy.load_state_dict(figures, best)
    assert copy.report() == early.report() and copy.exhausted
    assert torch.equal(copy.best_weights["w"], torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


# ---------------------------------------------------------------------------- encoder teacher

WRONG = {"refund": "delivery", "delivery": "login", "login": "refund"}


def finetune(teacher: EncoderTeacher, dev_intents: list[str], **options: object) -> dict:
    return teacher.finetune(
        TEXTS, INTENTS, epochs=6, lr=1e-3, head_lr=1e-2, batch_size=8,
        dev=(TEXTS, dev_intents), **options,
    )  # fmt: skip


@pytest.mark.parametrize("patience", [1, 2])
def test_teacher_stops_early_and_keeps_its_best_epoch(patience: int) -> None:
    teacher = tiny_teacher()
    seen: list[dict[str, float]] = []
    report = finetune(teacher, [WRONG[i] for i in INTENTS], patience=patience, on_epoch=seen.append)
    assert report["stop_reason"] == "early_stop" and report["best_epoch"] == 1
    # each epoch is reported as it ends: the run's log shows a long fine-tune's progress
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in seen] == report["epochs"]
    assert [e["seconds"] for e in seen] == sorted(e["seconds"] for e in seen)
    line = teacher_epoch_line(seen[0], 6)
    assert line.startswith("epoch 1/6: train loss ") and ", calibration accuracy " in line
    assert report["epochs_run"] == 1 + patience and report["kept"] == "epoch 1"
    assert report["dev_rows"] == len(TEXTS) and report["max_epochs"] == 6
    index = {name: i for i, name in enumerate(teacher.labels)}
    rows = [(t, index[WRONG[i]]) for t, i in zip(TEXTS, INTENTS, strict=True)]
    first = report["dev_history"][0]
    assert teacher._dev_figures(rows) == pytest.approx(
        (first["dev_accuracy"], first["dev_loss"]), abs=1e-5
    )
    assert teacher.meta["finetune"]["stop_reason"] == "early_stop"  # saved with the teacher


def test_teacher_without_dev_rows_runs_every_epoch_and_reports_a_hit_cap() -> None:
    report = tiny_teacher().finetune(TEXTS, INTENTS, epochs=2, batch_size=8, lr=1e-3)
    assert report["stop_reason"] == "epochs" and report["epochs_run"] == 2
    assert "best_epoch" not in report
    capped = finetune(tiny_teacher(), INTENTS, max_minutes=1e-9)
    assert capped["stop_reason"] == "time_limit" and capped["epochs_run"] == 0
    assert capped["max_minutes"] == 1e-9 and capped["kept"] == "last"


def test_teacher_dev_rows_of_unknown_intents_are_ignored() -> None:
    report = finetune(tiny_teacher(), ["nope"] * len(TEXTS))
    assert report["stop_reason"] == "epochs" and "dev_rows" not in report


def test_a_checkpoint_from_before_early_stopping_still_resumes(tmp_path: Path) -> None:
    """Its config lacks `stage1_patience` and its meta the clock and the stop flag: they take
    their defaults (no seconds spent, not stopped), and the run continues with early stopping."""
    dev = wrong_labels(intent_examples())
    stage1(tmp_path, FAST, [], max_steps=2)
    meta_path = next((tmp_path / "ck1").iterdir()) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["stage1_patience"], meta["elapsed_s"], meta["early_stopped"], meta["extra"]
    meta_path.write_text(json.dumps(meta))
    _, metrics = stage1(tmp_path, FAST, dev)
    assert metrics["resumed_from"] == 2 and metrics["stop_reason"] == "early_stop"


# ---------------------------------------------------------------------------------- stage 2

# 3 steps an epoch (24 replies, batches of 8); the decoder learns its replies within an epoch.
FAST2 = replace(CONFIG, stage2_epochs=6, stage2_lr=3e-3, stage2_batch_size=8)


def wrong_replies(examples: list[ReplyExample]) -> list[ReplyExample]:
    """Each context with a reply of tokens no training reply has: the better the decoder
    learns its training replies, the worse these score."""
    return [replace(e, reply_ids=[40 + i % 5, 41 + i % 5, 45]) for i, e in enumerate(examples)]


def stage2(
    tmp: Path, config: DistillConfig, dev: list[ReplyExample], max_steps: int | None = None
) -> tuple[DecoderStage, dict[str, object]]:
    stage = DecoderStage(
        tiny_student(), config, reply_examples(), tmp / "s2.jsonl", tmp / "ck2", dev=dev
    )
    stage.setup()
    metrics = stage.train(max_steps=max_steps)
    stage.cleanup()
    return stage, metrics


def decoder_state(stage: DecoderStage) -> dict[str, torch.Tensor]:
    return {
        k: v
        for k, v in stage.student.state_dict().items()
        if k.startswith(("decoder.", "reward_head."))
    }


def test_stage2_stops_when_the_dev_reply_loss_stops_falling_and_keeps_the_best_epoch(
    tmp_path: Path,
) -> None:
    dev = wrong_replies(reply_examples())
    stage, metrics = stage2(tmp_path / "es", FAST2, dev)
    assert metrics["stop_reason"] == "early_stop" and metrics["dev_replies"] == len(dev)
    early = metrics["early_stopping"]
    assert isinstance(early, dict) and "best_dev_accuracy" not in early
    best = early["best_epoch"]
    assert metrics["epochs_run"] == best + FAST2.stage2_patience < 6
    losses = [h["dev_loss"] for h in early["dev_history"]]
    assert early["best_dev_loss"] == min(losses) == losses[best - 1]
    assert early["kept"] == f"epoch {best}"
    # The kept weights are the best epoch's: the same run stopped after its 3 * best steps.
    first, _ = stage2(tmp_path / "one", FAST2, [], max_steps=3 * best)
    assert same_state(decoder_state(stage), decoder_state(first))
    assert stage.dev_loss() == pytest.approx(losses[best - 1], abs=1e-5)


def test_stage2_with_honest_dev_replies_trains_on_and_the_loss_falls(tmp_path: Path) -> None:
    dev = [e for e in reply_examples() if e.weight > 0]
    _, metrics = stage2(tmp_path, replace(FAST2, stage2_epochs=3), dev)
    assert metrics["completed"] and metrics["epochs_run"] == 3
    losses = [h["dev_loss"] for h in metrics["early_stopping"]["dev_history"]]
    assert losses[-1] < losses[0]


def test_a_resumed_stage2_stops_where_the_uninterrupted_one_did(tmp_path: Path) -> None:
    config = replace(FAST2, checkpoint_every=2)
    dev = wrong_replies(reply_examples())
    full, full_metrics = stage2(tmp_path / "a", config, dev)
    _, part = stage2(tmp_path / "b", config, dev, max_steps=4)  # mid epoch 2
    assert part["stop_reason"] == "max_steps" and "early_stopping" not in part
    resumed, metrics = stage2(tmp_path / "b", config, dev)
    assert metrics["resumed_from"] == 4 and metrics["stop_reason"] == "early_stop"
    assert metrics["early_stopping"] == full_metrics["early_stopping"]
    assert same_state(decoder_state(full), decoder_state(resumed))


def test_held_out_replies_come_from_calibration_else_a_seeded_tenth_of_training() -> None:
    train = reply_examples(400)
    cal = reply_examples(40)
    chosen = reply_dev(train, cal, seed=0)
    assert chosen.where == "calibration" and chosen.train == train
    assert chosen.dev == [e for e in cal if e.weight > 0]
    aside = reply_dev(train, cal[:31], seed=0)  # too few calibration replies to stop on
    assert aside.where == "set_aside" and len(aside.dev) == 40  # 10% of 400 (at least 32)
    assert len(aside.train) + len(aside.dev) == len(train)
    assert all(e in train and e not in aside.train for e in aside.dev)
    assert reply_dev(train, [], seed=0).dev == aside.dev  # the seed decides, nothing else
    assert reply_dev(train, [], seed=1).dev != aside.dev
    small = reply_dev(reply_examples(319), cal[:8], seed=0)  # the quickstart's case
    assert small.where == "none" and not small.dev and len(small.train) == 319
