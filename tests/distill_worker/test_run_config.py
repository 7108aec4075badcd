"""`RunConfig`: one validated config per run, stored on the run's row and read back (old rows
included), built the same way by the CLI and the worker's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from distill_worker import cli
from distill_worker.config import DistillConfig
from distill_worker.loop.context import LoopContext
from distill_worker.run_config import RunConfig, default_of
from feedback.models import RunTrigger
from feedback.settings import Settings


def test_a_config_round_trips_through_its_row() -> None:
    config = RunConfig(distill=DistillConfig(seed=7, dec_layers=2), reply_budget=5, int8=False)
    row = json.loads(json.dumps(config.to_row()))  # as the JSON column stores it
    assert row["distill"]["seed"] == 7 and row["reply_budget"] == 5
    assert RunConfig.from_row(row) == config
    assert RunConfig.model_validate_json(config.to_json()) == config


def test_bad_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="reply_budget"):
        RunConfig(reply_budget=-1)
    with pytest.raises(ValidationError, match="teacher_max_minutes"):
        RunConfig(teacher_max_minutes=0.0)
    with pytest.raises(ValidationError, match="dev_fraction"):
        RunConfig(dev_fraction=1.0)
    with pytest.raises(ValidationError, match="unknown DistillConfig fields"):
        RunConfig.from_row({"distill": {"learning_rate": 3.0}})
    with pytest.raises(ValidationError, match="must be divisible by dec_heads"):
        RunConfig.from_row({"distill": {"dec_hidden": 65, "dec_heads": 2}})
    with pytest.raises(ValueError, match="top_k"):  # pydantic's error is a ValueError
        RunConfig().with_changes(top_k=0)


def test_an_old_row_with_only_the_distill_config_still_loads() -> None:
    old = {"distill": {"seed": 3}, "int8": False, "compression": False, "warm_start": False}
    fallback = RunConfig(reply_budget=6, teacher_epochs=1, eval_replies=4)
    config = RunConfig.from_row(old, fallback=fallback)
    assert config.distill == DistillConfig(seed=3)
    assert config.int8 is False  # the row's own value
    assert (config.reply_budget, config.teacher_epochs, config.eval_replies) == (6, 1, 4)
    assert RunConfig.from_row({"distill": {}}).reply_budget == default_of("reply_budget")


def test_the_worker_settings_build_the_run_config() -> None:
    defaults = LoopContext(Settings()).run_settings(RunTrigger.MANUAL)
    assert defaults == RunConfig(eval_replies=8)  # unset settings keep RunConfig's defaults
    settings = Settings(
        worker={
            "reply_budget": 6,
            "replies_per_intent": 2,
            "teacher_epochs": 1,
            "encoder_teacher": "mpnet",
            "int8": False,
            "distill": {"seed": 2},
            "compression": {"enc_layers": 1},
            "gate": {"eval_replies": 4},
        }
    )
    ctx = LoopContext(settings)
    manual = ctx.run_settings(RunTrigger.MANUAL)
    assert (manual.reply_budget, manual.teacher_epochs, manual.eval_replies) == (6, 1, 4)
    assert manual.replies_per_intent == 2 and manual.encoder_teacher == "mpnet"
    assert defaults.encoder_teacher == "minilm"
    assert manual.int8 is False and manual.distill == DistillConfig(seed=2)
    latency = ctx.run_settings(RunTrigger.LATENCY)
    assert latency.int8 is True and latency.distill == DistillConfig(seed=2, enc_layers=1)
    row = ctx.run_config(RunTrigger.LATENCY)
    assert row["compression"] is True and RunConfig.from_row(row) == latency


def test_the_distill_command_builds_one_run_config(
    distill_configs: list[RunConfig], tmp_path: Path
) -> None:
    seen = distill_configs
    runner = CliRunner()
    result = runner.invoke(cli.distill, ["--out", str(tmp_path / "b"), "--dec-layers", "2"])
    assert result.exit_code == 0, result.output
    # every other default, the time caps included, is RunConfig's and DistillConfig's
    assert seen.pop() == RunConfig(distill=DistillConfig(dec_layers=2))

    config_file = tmp_path / "run.json"
    config_file.write_text(RunConfig(reply_budget=9, top_k=5).to_json(), encoding="utf-8")
    args = ["--out", str(tmp_path / "b"), "--config", str(config_file), "--no-int8"]
    result = runner.invoke(cli.distill, args)
    assert result.exit_code == 0, result.output
    # options left at their defaults keep the file's values; given ones override them
    assert seen.pop() == RunConfig(reply_budget=9, top_k=5, int8=False)

    old_file = tmp_path / "distill.json"
    old_file.write_text(DistillConfig(seed=4).to_json(), encoding="utf-8")
    result = runner.invoke(cli.distill, ["--out", str(tmp_path / "b"), "--config", str(old_file)])
    assert result.exit_code == 0, result.output
    assert seen.pop().distill == DistillConfig(seed=4)

    result = runner.invoke(cli.distill, ["--out", str(tmp_path / "b"), "--reply-budget", "-2"])
    assert result.exit_code == 2 and "reply_budget" in result.output

    args = ["--out", str(tmp_path / "b"), "--replies-per-intent", "2", "--reply-budget", "50"]
    result = runner.invoke(cli.distill, args)
    assert result.exit_code == 0, result.output
    assert seen.pop() == RunConfig(replies_per_intent=2, reply_budget=50)
    result = runner.invoke(
        cli.distill, ["--out", str(tmp_path / "b"), "--encoder-teacher", "mpnet"]
    )
    assert result.exit_code == 0, result.output
    assert seen.pop() == RunConfig(encoder_teacher="mpnet")
    result = runner.invoke(cli.distill, ["--out", str(tmp_path / "b"), "--encoder-teacher", "bert"])
    assert result.exit_code == 2 and "--encoder-teacher" in result.output and not seen
    bad = ["--out", str(tmp_path / "b"), "--replies-per-intent", "-1"]
    result = runner.invoke(cli.distill, bad)
    assert result.exit_code == 2 and "replies_per_intent" in result.output and not seen
    with pytest.raises(ValidationError, match="reply_share"):
        RunConfig(reply_share=1.5)


def test_a_config_file_with_run_knobs_is_read_whole_and_checked(
    distill_configs: list[RunConfig], tmp_path: Path
) -> None:
    seen = distill_configs
    runner = CliRunner()
    out = ["--out", str(tmp_path / "b")]
    ood = tmp_path / "ood.jsonl"
    ood.write_text('{"text": "what is the weather"}\n', encoding="utf-8")
    knobs = tmp_path / "knobs.json"
    knobs.write_text(json.dumps({"ood_corpus": str(ood), "oos_prior": 0.2}), encoding="utf-8")
    assert runner.invoke(cli.distill, [*out, "--config", str(knobs)]).exit_code == 0
    assert seen.pop() == RunConfig(ood_corpus=str(ood), oos_prior=0.2)
    # A misspelt key is refused with the file named, never dropped.
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"ood_corpsu": str(ood)}), encoding="utf-8")
    result = runner.invoke(cli.distill, [*out, "--config", str(typo)])
    assert result.exit_code == 2 and "typo.json" in result.output and "ood_corpsu" in result.output
    # --ood takes the file; a missing one is refused before any work.
    assert runner.invoke(cli.distill, [*out, "--ood", str(ood)]).exit_code == 0
    assert seen.pop().ood_corpus == str(ood.resolve())
    assert runner.invoke(cli.distill, [*out, "--ood", str(tmp_path / "nope")]).exit_code == 2
    # --unlabelled likewise (messages for stage 1 KD).
    assert runner.invoke(cli.distill, [*out, "--unlabelled", str(ood)]).exit_code == 0
    assert seen.pop().unlabelled_corpus == str(ood.resolve())
    assert runner.invoke(cli.distill, [*out, "--unlabelled", str(tmp_path / "no")]).exit_code == 2
    # The handoff score: auto by default, one of the two scores on request, nothing else.
    assert RunConfig().handoff_score == "auto"
    assert runner.invoke(cli.distill, [*out, "--handoff-score", "energy"]).exit_code == 0
    assert seen.pop().handoff_score == "energy"
    assert runner.invoke(cli.distill, [*out, "--handoff-score", "margin"]).exit_code == 2
    with pytest.raises(ValidationError, match="handoff_score"):
        RunConfig.model_validate({"handoff_score": "margin"})


def test_device_and_nproc_are_checked_before_any_work(
    distill_configs: list[RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    out = ["--out", str(tmp_path / "b")]
    assert runner.invoke(cli.distill, [*out, "--device", "cpu"]).exit_code == 0
    assert distill_configs.pop().device == "cpu"
    result = runner.invoke(cli.distill, [*out, "--device", "gpu"])
    assert result.exit_code == 2 and "device" in result.output and not distill_configs
    assert runner.invoke(cli.distill, [*out, "--nproc", "0"]).exit_code == 2
    # under torchrun already: --nproc would start torchrun inside torchrun
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = runner.invoke(cli.distill, [*out, "--nproc", "2"])
    assert result.exit_code == 2 and "under torchrun" in result.output
    assert not distill_configs and not (tmp_path / "b").exists()


def test_the_loop_takes_the_ood_corpus_from_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "ood.jsonl"
    settings = Settings(data_dir=tmp_path / "data", worker={"ood_corpus": path})
    config = LoopContext(settings).run_settings(RunTrigger.SCHEDULE)
    assert config.ood_corpus == str(path.resolve())
    plain = Settings(data_dir=tmp_path / "data")
    assert LoopContext(plain).run_settings(RunTrigger.SCHEDULE).ood_corpus is None


def test_the_data_folders_ood_corpus_is_every_runs_default(
    distill_configs: list[RunConfig], tmp_path: Path
) -> None:
    """`chatdistill ood-corpus` writes to the data folder by default; a run of that folder, by
    the CLI or by the loop, calibrates its handoff on it unless told otherwise."""
    seen, runner = distill_configs, CliRunner()
    out = ["--out", str(tmp_path / "b")]
    assert runner.invoke(cli.distill, out).exit_code == 0
    assert seen.pop().ood_corpus is None  # the folder has none yet
    default = tmp_path / "data" / "ood_corpus.jsonl"
    default.parent.mkdir()
    default.write_text('{"text": "what is the weather"}\n', encoding="utf-8")
    assert runner.invoke(cli.distill, out).exit_code == 0
    assert seen.pop().ood_corpus == str(default.resolve())
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "book me a table"}\n', encoding="utf-8")
    assert runner.invoke(cli.distill, [*out, "--ood", str(other)]).exit_code == 0
    assert seen.pop().ood_corpus == str(other.resolve())
    assert runner.invoke(cli.distill, [*out, "--no-ood"]).exit_code == 0
    assert seen.pop().ood_corpus is None
    both = runner.invoke(cli.distill, [*out, "--ood", str(other), "--no-ood"])
    assert both.exit_code == 2 and "pick one" in both.output and not seen
    # A --config file that names a corpus, or none (null), is followed; one silent about it
    # takes the folder's; --no-ood overrides the file.
    for stored, expected in [
        ({"ood_corpus": None}, None),
        ({"ood_corpus": str(other)}, str(other)),
        ({"oos_prior": 0.2}, str(default.resolve())),
    ]:
        config_file = tmp_path / "run.json"
        config_file.write_text(json.dumps(stored), encoding="utf-8")
        assert runner.invoke(cli.distill, [*out, "--config", str(config_file)]).exit_code == 0
        assert seen.pop().ood_corpus == expected, stored
    args = [*out, "--config", str(config_file), "--no-ood"]
    assert runner.invoke(cli.distill, args).exit_code == 0
    assert seen.pop().ood_corpus is None
    # The loop: the folder's corpus when its settings name none, theirs when they do.
    loop = LoopContext(Settings(data_dir=tmp_path / "data"))
    assert loop.run_settings(RunTrigger.SCHEDULE).ood_corpus == str(default.resolve())
    named = LoopContext(Settings(data_dir=tmp_path / "data", worker={"ood_corpus": other}))
    assert named.run_settings(RunTrigger.SCHEDULE).ood_corpus == str(other.resolve())


def test_the_loop_takes_the_handoff_score_from_its_settings() -> None:
    default = LoopContext(Settings()).run_settings(RunTrigger.SCHEDULE)
    assert default.handoff_score == "auto"
    fixed = LoopContext(Settings(worker={"handoff_score": "energy"}))
    assert fixed.run_settings(RunTrigger.SCHEDULE).handoff_score == "energy"
    with pytest.raises(ValidationError, match="handoff_score"):
        Settings(worker={"handoff_score": "margin"})
