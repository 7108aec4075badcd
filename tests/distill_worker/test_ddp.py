"""The stage recipes under a real `torchrun` with 2 processes (gloo on CPU): the same loss curve
as one process, gradient compression (fp16, PowerSGD), and PowerSGD's state through a checkpoint.

Why the curves match: each rank takes every 2nd example of each global batch and DDP averages
the gradients weighted by each rank's share, so for losses that are row means (stage 1 here: every
row has a label, teacher logits and features) the 2-process step is the 1-process step up to
float summation order. Stage 2's losses are means over tokens (and over rated rows): each rank
weights its terms by its share of those units (`distributed.unit_means`), so stage 2 matches to
float order too. (Before that, shards were weighted by rows: 5.5% apart on one step here, 15% on
the demo data of test_torchrun_run.py.) Dropout is off (its draws would differ).

This file is also the script torchrun starts (`__main__` below).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the stages need the `train` extra (torch)")

from distill_worker import distributed  # noqa: E402
from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.examples import IntentExample  # noqa: E402
from distill_worker.stages.decoder_stage import DecoderStage  # noqa: E402
from distill_worker.stages.encoder_stage import EncoderStage  # noqa: E402
from tests.fixtures.distill_runs import EXACT_RTOL, losses  # noqa: E402
from tests.fixtures.tiny_student import (  # noqa: E402
    FEATURES,
    context,
    reply_examples,
    tiny_student,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG = DistillConfig(
    max_source_tokens=16,
    max_reply_tokens=8,
    stage1_epochs=3,
    stage1_batch_size=8,
    stage2_epochs=2,
    stage2_batch_size=8,
    warmup_fraction=0.2,
    log_every=1,
    checkpoint_every=1000,
)
STAGE1_STEPS = 9  # 24 examples / 8 per batch * 3 epochs
# Tolerances (relative, per step) of the 2-process curve against the 1-process one.
FP16_RTOL = 1e-3  # stage 1 with fp16-compressed gradients


def full_intent_examples(n: int = 24) -> list[IntentExample]:
    """Every row has a gold label, teacher logits and teacher features (row-mean losses)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        cls = i % 3
        out.append(
            IntentExample(
                input_ids=context(i, cls, g),
                label=cls,
                teacher_logits=[3.0 if c == cls else 0.0 for c in range(3)],
                teacher_features=[float(cls == f % 3) + 0.1 * f for f in range(FEATURES)],
            )
        )
    return out


def _student() -> Any:
    """The tiny student, on this rank's device (a GPU under NCCL)."""
    ctx = distributed.current()
    return tiny_student().to(ctx.device if ctx is not None else "cpu")


def stage1(work: Path, max_steps: int | None = None) -> dict[str, Any]:
    stage = EncoderStage(
        _student(), CONFIG, full_intent_examples(), FEATURES, work / "s1.jsonl", work / "ck1"
    )
    stage.setup()
    metrics = stage.train(max_steps=max_steps)
    stage.cleanup()
    return metrics


def stage2(work: Path, max_steps: int | None = None) -> dict[str, Any]:
    stage = DecoderStage(_student(), CONFIG, reply_examples(), work / "s2.jsonl", work / "ck2")
    stage.setup()
    metrics = stage.train(max_steps=max_steps)
    stage.cleanup()
    return metrics


def scenarios(out: Path) -> None:
    """What each rank runs (rank 0 writes the logs): plain, fp16, PowerSGD straight through and
    PowerSGD stopped after 4 steps then resumed from its checkpoint."""
    ctx = distributed.current()
    assert ctx is not None and ctx.world_size == 2
    stage1(out / "none")
    stage2(out / "none")
    ctx.comm = distributed.CommConfig(compression="fp16")
    stage1(out / "fp16")
    ctx.comm = distributed.CommConfig(compression="powersgd", powersgd_start_iter=2)
    stage1(out / "powersgd")
    first = stage1(out / "powersgd_resumed", max_steps=4)
    second = stage1(out / "powersgd_resumed")
    if ctx.rank == 0:
        (out / "resume.json").write_text(json.dumps([first["step"], second["resumed_from"]]))
    ctx.comm = distributed.CommConfig()
    # stopped part-way on 2 ranks: the test resumes them in one process
    stage1(out / "handover", max_steps=4)
    stage2(out / "handover", max_steps=2)


def torchrun(out: Path, backend: str = "gloo") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(Path(__file__).resolve()),
        "--out",
        str(out),
        "--backend",
        backend,
    ]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def test_two_processes_follow_the_one_process_loss_curve(
    two_process_run: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    single1, single2 = stage1(tmp_path), stage2(tmp_path)
    assert single1["step"] == STAGE1_STEPS and single2["completed"]
    one = losses(tmp_path / "s1.jsonl")
    two = losses(two_process_run / "none" / "s1.jsonl")
    assert len(one) == len(two) == STAGE1_STEPS
    assert two == pytest.approx(one, rel=EXACT_RTOL)
    one2, two2 = losses(tmp_path / "s2.jsonl"), losses(two_process_run / "none" / "s2.jsonl")
    assert len(one2) == len(two2) > 0
    assert two2 == pytest.approx(one2, rel=EXACT_RTOL)  # token means weighted by tokens
    # the same weights at the end of each stage: rank 0's checkpoints equal the single process's
    from safetensors.torch import load_file

    for folder in ("ck1", "ck2"):
        ddp_final = max((two_process_run / "none" / folder).iterdir())
        solo_final = max((tmp_path / folder).iterdir())
        a = load_file(ddp_final / "model.safetensors")
        b = load_file(solo_final / "model.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a), folder


def test_fp16_compression_keeps_the_curve(two_process_run: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    stage1(tmp_path)
    one = losses(tmp_path / "s1.jsonl")
    fp16 = losses(two_process_run / "fp16" / "s1.jsonl")
    assert fp16 == pytest.approx(one, rel=FP16_RTOL)
    assert fp16 != one  # the gradients really went through the fp16 hook


def test_powersgd_state_survives_a_checkpoint(two_process_run: Path) -> None:
    straight = losses(two_process_run / "powersgd" / "s1.jsonl")
    resumed = losses(two_process_run / "powersgd_resumed" / "s1.jsonl")
    assert json.loads((two_process_run / "resume.json").read_text()) == [4, 4]
    assert len(straight) == len(resumed) == STAGE1_STEPS
    # PowerSGD (rank 1) changes the trajectory, but still learns ...
    assert straight[-1] < straight[0]
    # ... and the run stopped after 4 steps and resumed from its checkpoint (error feedback,
    # warm-start P/Q, iteration and RNG of both ranks restored) continues exactly.
    assert resumed == pytest.approx(straight, rel=1e-6)
    checkpoint = max((two_process_run / "powersgd_resumed" / "ck1").iterdir())
    from safetensors import safe_open

    with safe_open(str(checkpoint / "state.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {"extra.ddp.r0.iter", "extra.ddp.r1.iter", "extra.ddp.world_size"} <= keys
    assert any(k.startswith("extra.ddp.r1.error.") for k in keys)


def test_a_run_resumes_under_another_world_size(two_process_run: Path, tmp_path: Path) -> None:
    """Checkpoints hold one copy of the weights and the epoch's order: a few steps of each stage
    on 2 ranks, then the rest in one process, follow the 1-process curves (the per-rank state,
    here the RNGs, starts afresh from rank 0's)."""
    torch.set_num_threads(1)
    stage1(tmp_path)
    stage2(tmp_path)
    handover = two_process_run / "handover"
    resumed = stage1(handover)
    assert resumed["resumed_from"] == 4 and resumed["step"] == STAGE1_STEPS
    assert losses(handover / "s1.jsonl") == pytest.approx(
        losses(tmp_path / "s1.jsonl"), rel=EXACT_RTOL
    )
    resumed2 = stage2(handover)
    assert resumed2["resumed_from"] == 2 and resumed2["completed"]
    assert losses(handover / "s2.jsonl") == pytest.approx(
        losses(tmp_path / "s2.jsonl"), rel=EXACT_RTOL
    )


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 NVIDIA GPUs"
)
def test_nccl_on_two_gpus_follows_the_gloo_curve(two_process_run: Path, tmp_path: Path) -> None:
    done = torchrun(tmp_path, backend="nccl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for run in ("none", "fp16", "powersgd"):
        gpu, cpu = losses(tmp_path / run / "s1.jsonl"), losses(two_process_run / run / "s1.jsonl")
        assert gpu == pytest.approx(cpu, rel=1e-3), run  # GPU kernels sum in another order
    resumed = losses(tmp_path / "powersgd_resumed" / "s1.jsonl")
    assert resumed == pytest.approx(losses(tmp_path / "powersgd" / "s1.jsonl"), rel=1e-5)


def test_outside_torchrun_the_hooks_are_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.current() is None and distributed.is_main()
    assert distributed.shard([3, 1, 2]) == [3, 1, 2]
    with pytest.raises(distributed.DistributedError, match="torchrun"):
        distributed.init_from_env()
    with pytest.raises(distributed.DistributedError, match="compression"):
        distributed.CommConfig(compression="int4")  # type: ignore[arg-type]
    with pytest.raises(distributed.DistributedError, match="start_iter"):
        distributed.CommConfig(compression="powersgd", powersgd_start_iter=1)
    chosen = distributed.CommConfig.from_env({"DDP_COMPRESSION": "bf16", "DDP_BUCKET_CAP_MB": "5"})
    assert (chosen.compression, chosen.bucket_cap_mb) == ("bf16", 5.0)
    with pytest.raises(distributed.DistributedError, match="DDP_COMPRESSION"):
        distributed.CommConfig.from_env({"DDP_COMPRESSION": "zip"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="run the DDP scenarios on this torchrun rank")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with distributed.data_parallel(backend=args.backend):
        scenarios(args.out)
