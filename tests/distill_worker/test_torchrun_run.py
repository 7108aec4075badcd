"""The whole run under a real `torchrun` (2 gloo processes, the real default teachers, slow):
`chatdistill distill --nproc 2` against the same command in one process, on the same data.

- the 2-process run gives a bundle that passes its parity check, says where it ran, and asked
  the teacher once per prompt in all (rank 1 gets a responder that refuses to be asked: had it
  asked, the run would have failed);
- its stage losses follow the 1-process run's up to float summation order, in both stages (stage
  2's token means are weighted by each shard's tokens: `distributed.unit_means`).

Both runs use one data folder, so the second finds the teacher's replies in the store's cache,
and the 1-process run reuses the encoder teacher the 2-process run fine-tuned (copied into its
work folder): the stages then start from the same inputs, and only the data-parallel split can
make them differ. Dropout is off (its draws differ by rank).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_runtime.manifest import verify_bundle
from distill_worker.data.demo_corpus import demo_knowledge_path
from tests.fixtures.distill_runs import EXACT_RTOL, TINY_RUN, losses, write_demo_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROMPTS = TINY_RUN["reply_budget"]  # the prompts the teacher is asked for stage 2


def _distill(
    tmp: Path, name: str, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "chat_api.cli",
        "distill",
        "--data",
        str(tmp / "demo.jsonl"),
        "--knowledge",
        str(demo_knowledge_path()),
        "--config",
        str(tmp / "config.json"),
        "--out",
        str(tmp / f"bundle-{name}"),
        "--work-dir",
        str(tmp / f"work-{name}"),
        *extra,
    ]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )


def test_two_ranks_make_the_bundle_one_process_makes(responder_dir: Path, tmp_path: Path) -> None:
    write_demo_rows(tmp_path / "demo.jsonl")
    (tmp_path / "config.json").write_text(json.dumps(TINY_RUN), encoding="utf-8")
    data_dir = tmp_path / "data"
    (data_dir / "teachers").mkdir(parents=True)
    (data_dir / "teachers" / responder_dir.name).symlink_to(responder_dir)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    env = {
        **base,
        "CHATDISTILL_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }

    two = _distill(tmp_path, "two", env, "--nproc", "2")
    assert two.returncode == 0, two.stdout[-4000:] + two.stderr[-6000:]
    assert "rank 0 of 2 (gloo" in two.stdout
    assert two.stdout.count("[4/7] stage 1") == 1  # rank 1's log lines are not repeated
    manifest = verify_bundle(tmp_path / "bundle-two")
    assert manifest.parity["passed"] is True
    metrics = manifest.metrics
    assert metrics["device"]["world_size"] == 2 and metrics["device"]["backend"] == "gloo"
    assert metrics["device"]["device"].startswith("cpu")
    # asked once per prompt in all: rank 0 asked for every prompt, rank 1 for none
    assert metrics["teacher_cache"] == {"hits": 0, "misses": PROMPTS, "stored": PROMPTS}

    shutil.copytree(
        tmp_path / "work-two" / "encoder_teacher", tmp_path / "work-one" / "encoder_teacher"
    )
    one = _distill(tmp_path, "one", env)
    assert one.returncode == 0, one.stdout[-4000:] + one.stderr[-6000:]
    assert "rank 0 of" not in one.stdout
    single = verify_bundle(tmp_path / "bundle-one").metrics
    assert single["device"]["world_size"] == 1
    assert single["teacher_cache"] == {"hits": PROMPTS, "misses": 0, "stored": 0}

    s1_two = losses(tmp_path / "work-two" / "logs" / "stage1.jsonl")
    s1_one = losses(tmp_path / "work-one" / "logs" / "stage1.jsonl")
    assert len(s1_two) == len(s1_one) > 0
    assert s1_two == pytest.approx(s1_one, rel=100 * EXACT_RTOL)
    s2_two = losses(tmp_path / "work-two" / "logs" / "stage2.jsonl")
    s2_one = losses(tmp_path / "work-one" / "logs" / "stage2.jsonl")
    assert len(s2_two) == len(s2_one) > 0
    assert s2_two == pytest.approx(s2_one, rel=100 * EXACT_RTOL)
    # the same student: the two bundles score the held-out rows alike
    assert metrics["intent"]["accuracy"] == pytest.approx(single["intent"]["accuracy"], abs=1e-6)
