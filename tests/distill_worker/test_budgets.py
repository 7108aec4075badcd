"""Time caps as a safety net: the clock carried across a resume, one rule for the defaults (the
CLI options, a --config file, the loop's settings), and a hit cap named in the run's metrics and
in the last line of `chatdistill distill`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch", reason="the stages need the `train` extra (torch)")

from distill_worker import cli  # noqa: E402
from distill_worker.budgets import cap_note, run_budgets, stage_budget, teacher_budget  # noqa: E402
from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.loop.context import LoopContext  # noqa: E402
from distill_worker.run_config import RunConfig  # noqa: E402
from distill_worker.stages.training import Checkpoint  # noqa: E402
from feedback.models import RunTrigger  # noqa: E402
from feedback.settings import Settings  # noqa: E402
from tests.fixtures.tiny_student import CONFIG, run_decoder, run_encoder, tiny_student  # noqa: E402


def saved_elapsed(checkpoints: Path) -> float:
    latest = Checkpoint.latest(checkpoints)
    assert latest is not None
    meta = json.loads((latest / "meta.json").read_text())
    assert Checkpoint.load(latest).position.elapsed_s == meta["elapsed_s"]
    return float(meta["elapsed_s"])


def test_the_cap_clock_carries_over_a_resume(tmp_path: Path) -> None:
    config = replace(CONFIG, stage1_epochs=4)
    _, first = run_encoder(tmp_path, config, tiny_student(), max_steps=3)
    spent = saved_elapsed(tmp_path / "ck1")
    assert spent > 0 and first["elapsed_s"] == pytest.approx(spent, abs=0.01)
    # A cap below what was already spent: a fresh clock would train on, the carried one stops
    # before the first step of the resumed run.
    capped = replace(config, stage1_max_minutes=0.9 * spent / 60)
    _, resumed = run_encoder(tmp_path, capped, tiny_student())
    assert resumed["stop_reason"] == "time_limit" and resumed["steps_run"] == 0
    assert resumed["elapsed_s"] >= round(spent, 2) and saved_elapsed(tmp_path / "ck1") >= spent
    # Raising the cap (an operational field) lets the same checkpoint continue, still counting.
    _, done = run_encoder(tmp_path, config, tiny_student())
    assert done["completed"] and done["steps_run"] == 9 and done["elapsed_s"] > spent


def test_stage2_carries_its_clock_too(tmp_path: Path) -> None:
    student = tiny_student()
    run_decoder(tmp_path, CONFIG, student, max_steps=2)
    spent = saved_elapsed(tmp_path / "ck2")
    _, resumed = run_decoder(tmp_path, CONFIG, student)
    assert resumed["resumed_from"] == 2 and resumed["elapsed_s"] > spent


def test_a_hit_cap_shows_in_the_budgets_and_the_last_line(tmp_path: Path) -> None:
    config = replace(CONFIG, stage1_max_minutes=1e-9)
    _, stage1 = run_encoder(tmp_path / "a", config, tiny_student())
    _, stage2 = run_decoder(tmp_path / "b", config, tiny_student())
    teacher = {"epochs": [{"epoch": 1, "loss": 1.0}], "epochs_run": 1, "max_epochs": 3}
    teacher |= {"stop_reason": "time_limit", "max_minutes": 8.0, "seconds": 480.2}
    budgets = run_budgets(
        teacher_budget(teacher, RunConfig()),
        stage_budget(stage1, config.stage1_epochs, config.stage1_max_minutes),
        stage_budget(stage2, config.stage2_epochs, config.stage2_max_minutes),
    )
    assert budgets["caps_hit"] == ["teacher", "stage1"]
    assert budgets["stage1"]["stop_reason"] == "time_limit" and budgets["stage1"]["steps"] == 0
    assert budgets["stage2"]["stop_reason"] == "epochs" and budgets["stage2"]["epochs_run"] == 2
    assert budgets["teacher"]["cap_minutes"] == 8.0 and budgets["teacher"]["epochs_run"] == 1
    json.dumps(budgets)  # it goes into the manifest as it is
    assert cap_note(budgets) == (
        " (the encoder teacher stopped at its 8-minute cap; stage 1 stopped at its 1e-09-minute "
        "cap)"
    )
    assert cap_note(run_budgets({}, budgets["stage2"], budgets["stage2"])) == ""
    old_report = {"epochs": [], "seconds": 3.0, "stopped_early": True}  # before stop_reason
    assert teacher_budget(old_report, RunConfig())["stop_reason"] == "time_limit"


def test_the_caps_have_one_default_with_or_without_a_config_file(
    distill_configs: list[RunConfig], tmp_path: Path
) -> None:
    seen = distill_configs
    runner = CliRunner()
    out = ["--out", str(tmp_path / "b")]
    assert runner.invoke(cli.distill, out).exit_code == 0
    plain = seen.pop()
    assert plain == RunConfig()  # the defaults: RunConfig's and DistillConfig's, caps included
    assert plain.teacher_max_minutes and plain.distill.stage1_max_minutes
    assert plain.distill.stage2_max_minutes
    # A --config file without caps gets the same caps; one that sets them keeps them.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"reply_budget": 9, "distill": {"seed": 3}}), encoding="utf-8")
    assert runner.invoke(cli.distill, [*out, "--config", str(bare)]).exit_code == 0
    from_file = seen.pop()
    assert from_file.teacher_max_minutes == plain.teacher_max_minutes
    assert from_file.distill == DistillConfig(seed=3)
    chosen = tmp_path / "caps.json"
    chosen.write_text(json.dumps({"stage1_max_minutes": 5, "seed": 3}), encoding="utf-8")
    assert runner.invoke(cli.distill, [*out, "--config", str(chosen)]).exit_code == 0
    assert seen.pop().distill == DistillConfig(seed=3, stage1_max_minutes=5)
    # The options override either; 0 is no cap.
    args = [*out, "--config", str(chosen), "--teacher-max-minutes", "0"]
    args += ["--stage1-max-minutes", "12.5", "--stage2-max-minutes", "0"]
    result = runner.invoke(cli.distill, args)
    assert result.exit_code == 0, result.output
    config = seen.pop()
    assert config.teacher_max_minutes is None
    assert config.distill == DistillConfig(seed=3, stage1_max_minutes=12.5, stage2_max_minutes=None)
    result = runner.invoke(cli.distill, [*out, "--stage1-max-minutes", "-1"])
    assert result.exit_code == 2 and "0 for no cap" in result.output
    assert "0: no cap" in runner.invoke(cli.distill, ["--help"]).output


def test_the_loop_takes_the_teacher_cap_from_its_settings() -> None:
    default = LoopContext(Settings()).run_settings(RunTrigger.MANUAL)
    assert default.teacher_max_minutes == RunConfig().teacher_max_minutes
    worker = {"teacher_max_minutes": 25, "distill": {"stage1_max_minutes": None}}
    config = LoopContext(Settings(worker=worker)).run_settings(RunTrigger.SCHEDULE)
    assert config.teacher_max_minutes == 25 and config.distill.stage1_max_minutes is None
    assert config.distill.stage2_max_minutes == DistillConfig().stage2_max_minutes
    none = LoopContext(Settings(worker={"teacher_max_minutes": 0})).run_settings(RunTrigger.MANUAL)
    assert none.teacher_max_minutes is None
    # stored on the run's row, so the train step reads the cap the run was opened with
    row = LoopContext(Settings(worker=worker)).run_config(RunTrigger.SCHEDULE)
    assert RunConfig.from_row(row).teacher_max_minutes == 25
