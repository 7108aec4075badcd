"""The same command on the same data gives the same student, on a quiet machine and on a busy
one: budgets are epochs and early stopping (the time caps are far off), every random draw comes
from the run's seed, so what other work does to the CPU changes how long a run takes, never what
it learns. Two real runs (teacher fine-tune, stage 1, responder replies, stage 2, export), the
second beside a process that keeps a core busy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bundle_runtime.onnx_student import OnnxStudent
from distill_worker.data.demo_corpus import demo_utterances
from distill_worker.pipeline import DistillRequest, run_distillation
from distill_worker.run_config import RunConfig
from tests.fixtures.distill_runs import tiny_config

pytestmark = pytest.mark.slow

TINY = tiny_config(stage1_epochs=3, stage2_epochs=2, max_reply_tokens=16)
MESSAGES = ["where is my parcel?", "I want my money back", "can I change the address?", "hi"]


@contextmanager
def busy_cpus() -> Iterator[None]:
    """A CPU-heavy process beside the run for as long as the block runs (one: the suite runs
    other tests on the other cores)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_the_same_run_on_a_quiet_and_a_busy_machine_gives_the_same_student(
    responder_dir: Path, tmp_path: Path
) -> None:
    rows = demo_utterances(seed=0, per_intent=8)
    data = tmp_path / "demo.jsonl"
    data.write_text(
        "".join(json.dumps({"text": r.text, "intent": r.intent}) + "\n" for r in rows),
        encoding="utf-8",
    )
    config = RunConfig(distill=TINY, reply_budget=4, eval_replies=0, teacher_epochs=2)

    def run(name: str) -> tuple[dict, np.ndarray]:
        result = run_distillation(
            DistillRequest(
                out_dir=tmp_path / name / "bundle",
                work_dir=tmp_path / name / "run",
                responder_dir=responder_dir,
                config=config,
                data_path=data,
            ),
            log=lambda _: None,
        )
        student = OnnxStudent(result.bundle_dir, precision="fp32")
        ids, mask = student.encode_texts(MESSAGES)
        return result.metrics, np.asarray(student.encode(ids, mask)[2])

    quiet, quiet_logits = run("quiet")
    with busy_cpus():
        busy, busy_logits = run("busy")

    assert not quiet["budgets"]["caps_hit"] and not busy["budgets"]["caps_hit"]
    assert busy["intent"]["accuracy"] == quiet["intent"]["accuracy"]
    assert busy["intent"]["teacher"]["accuracy"] == quiet["intent"]["teacher"]["accuracy"]
    assert busy["intent"]["macro_f1"] == quiet["intent"]["macro_f1"]
    assert busy["intent"]["handoff"] == quiet["intent"]["handoff"]
    np.testing.assert_array_equal(busy_logits, quiet_logits)  # the same weights, bit for bit
    # Stage 2 too: its last step's losses (decoder and reward head) are the same numbers.
    assert busy["stage2"]["steps_run"] == quiet["stage2"]["steps_run"]
    assert busy["stage2"]["last"] == quiet["stage2"]["last"]
