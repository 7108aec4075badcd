"""The stage recipes under a training precision (`distill_worker.devices.Precision`).

On the CPU the default precision is fp32 and the maths is bit for bit that of a run without the
setting (test_stages.py pins those losses). CPU autocast (bf16, and fp16 with a `GradScaler`)
runs the mixed-precision code paths for real here: the forward passes really compute in the
low dtype, the losses stay close to fp32's, the scaler skips an overflowing step and its state
survives a resume. The GPU tests (marked `gpu`) train the tiny student on CUDA in bf16 and check
it against the CPU's fp32 losses, and export a student that lives on the GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the stages need the `train` extra (torch)")

from torch import dtype as DType  # noqa: E402

from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.devices import Precision  # noqa: E402
from distill_worker.model.student import Student  # noqa: E402
from distill_worker.stages.decoder_stage import DecoderStage  # noqa: E402
from distill_worker.stages.encoder_stage import EncoderStage  # noqa: E402
from distill_worker.stages.training import optimizer_step  # noqa: E402
from tests.fixtures.tiny_bundle import TinyBundle  # noqa: E402
from tests.fixtures.tiny_student import (  # noqa: E402
    CONFIG,
    FEATURES,
    intent_examples,
    logged_losses,
    reply_examples,
    same_state,
    tiny_student,
)

BF16 = Precision("cpu", torch.bfloat16)
FP16 = Precision("cpu", torch.float16)
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def stage1(
    tmp: Path,
    student: Student,
    precision: Precision | None,
    config: DistillConfig = CONFIG,
    dev: bool = True,
) -> tuple[EncoderStage, dict[str, Any]]:
    """Stage 1 on the toy examples; `dev`: early stopping on the first 12 of them."""
    stage = EncoderStage(
        student, config, intent_examples(), FEATURES, tmp / "s1.jsonl", tmp / "ck1",
        dev=intent_examples()[:12] if dev else (), precision=precision,
    )  # fmt: skip
    stage.setup()
    metrics = stage.train()
    stage.cleanup()
    return stage, metrics


def stage2(
    tmp: Path, student: Student, precision: Precision | None, config: DistillConfig = CONFIG
) -> tuple[DecoderStage, dict[str, Any]]:
    stage = DecoderStage(
        student, config, reply_examples(), tmp / "s2.jsonl", tmp / "ck2", precision=precision
    )
    stage.setup()
    metrics = stage.train()
    stage.cleanup()
    return stage, metrics


def output_dtypes(student: Student) -> set[DType]:
    """Records the dtypes the intent head and the decoder put out, from now on."""
    seen: set[DType] = set()

    def hook(_: Any, __: Any, output: Any) -> None:
        first = output[0] if isinstance(output, tuple) else output
        seen.add(first.dtype)

    student.intent_head.register_forward_hook(hook)
    student.decoder.register_forward_hook(hook)
    return seen


# ------------------------------------------------------------------------------------ the CPU


def test_the_default_precision_on_the_cpu_is_fp32_and_changes_nothing(tmp_path: Path) -> None:
    default_student, explicit_student = tiny_student(), tiny_student()
    dtypes = output_dtypes(default_student)
    default, _ = stage1(tmp_path / "a", default_student, None)
    explicit, _ = stage1(tmp_path / "b", explicit_student, Precision("cpu"))
    assert default.precision == Precision("cpu") and default.scaler is None
    assert dtypes == {torch.float32}
    assert logged_losses(tmp_path / "a" / "s1.jsonl") == logged_losses(tmp_path / "b" / "s1.jsonl")
    assert default.dev_figures() == explicit.dev_figures()
    stage2(tmp_path / "a", default_student, None)
    stage2(tmp_path / "b", explicit_student, Precision("cpu"))
    assert logged_losses(tmp_path / "a" / "s2.jsonl") == logged_losses(tmp_path / "b" / "s2.jsonl")
    assert same_state(default_student.state_dict(), explicit_student.state_dict())
    meta = json.loads(next((tmp_path / "a" / "ck2").glob("step_*/meta.json")).read_text())
    assert "grad_scaler" not in meta["extra"]  # fp32: no scaler, nothing new in the checkpoint


def test_the_stages_run_under_cpu_bf16_autocast_close_to_fp32(tmp_path: Path) -> None:
    student = tiny_student()
    dtypes = output_dtypes(student)
    s1, _ = stage1(tmp_path / "bf16", student, BF16)
    s2, _ = stage2(tmp_path / "bf16", student, BF16)
    assert dtypes == {torch.bfloat16}  # the forward passes really ran in bf16
    assert s1.scaler is None and s2.scaler is None  # bf16 needs no loss scaling
    reference = tiny_student()
    r1, _ = stage1(tmp_path / "fp32", reference, None)
    stage2(tmp_path / "fp32", reference, None)
    for log in ("s1.jsonl", "s2.jsonl"):
        mixed, fp32 = logged_losses(tmp_path / "bf16" / log), logged_losses(tmp_path / "fp32" / log)
        assert len(mixed) == 6 and all(math.isfinite(x) for x in mixed)
        assert mixed != fp32  # another dtype, other roundings
        assert mixed == pytest.approx(fp32, rel=5e-3), log
    dtypes.clear()
    accuracy, loss = s1.dev_figures()  # scored under autocast too
    assert dtypes == {torch.bfloat16}
    fp32_accuracy, fp32_loss = r1.dev_figures()
    assert accuracy == pytest.approx(fp32_accuracy, abs=0.12)  # one of 9 rows may flip
    assert loss == pytest.approx(fp32_loss, rel=2e-2) and loss != fp32_loss


def test_fp16_steps_go_through_the_scaler_whose_state_survives_a_resume(tmp_path: Path) -> None:
    """A scale of 2^10 set at the start is checkpointed and restored (a fresh scaler would
    start at 2^16); the resumed run ends with the weights of the uninterrupted one."""
    config = replace(CONFIG, checkpoint_every=2)

    def run(folder: Path, student: Student, max_steps: int | None) -> DecoderStage:
        stage = DecoderStage(
            student, config, reply_examples(), folder / "s2.jsonl", folder / "ck2", precision=FP16
        )
        stage.setup()
        assert stage.scaler is not None
        if stage.resumed_from is None:
            stage.scaler.load_state_dict(stage.scaler.state_dict() | {"scale": 2.0**10})
        stage.train(max_steps=max_steps)
        stage.cleanup()
        return stage

    full_student = tiny_student()
    dtypes = output_dtypes(full_student)
    full = run(tmp_path / "full", full_student, None)
    assert dtypes == {torch.float16}
    assert full.scaler is not None and full.scaler.get_scale() == 2.0**10
    logs = [json.loads(line) for line in (tmp_path / "full" / "s2.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r and r.get("event") is None]
    assert [r["grad_scale"] for r in steps] == [2.0**10] * 6
    fp32 = tmp_path / "fp32"
    stage2(fp32, tiny_student(), None)
    fp16_losses = [r["loss"] for r in steps]
    assert fp16_losses == pytest.approx(logged_losses(fp32 / "s2.jsonl"), rel=5e-3)
    meta = json.loads((tmp_path / "full" / "ck2" / "step_00000006" / "meta.json").read_text())
    assert meta["extra"]["grad_scaler"]["scale"] == 2.0**10

    run(tmp_path / "resumed", tiny_student(), max_steps=4)
    resumed_student = tiny_student(seed=9)
    resumed = run(tmp_path / "resumed", resumed_student, None)
    assert resumed.resumed_from == 4
    assert resumed.scaler is not None and resumed.scaler.get_scale() == 2.0**10
    assert same_state(resumed_student.state_dict(), full_student.state_dict())


def test_an_overflowing_fp16_step_is_skipped_but_the_schedule_moves_on() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (step + 1))
    scaler = FP16.grad_scaler()
    assert scaler is not None
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(3, 4)
    huge = layer(x).sum() * 1e36  # times the 2^16 scale: inf gradients in fp32
    with pytest.warns(UserWarning, match="lr_scheduler.step"):  # torch notes the skipped step
        norm = optimizer_step(huge, opt, sched, clip=1.0, scaler=scaler)
    assert not math.isfinite(norm)
    assert same_state(before, layer.state_dict())  # skipped
    assert scaler.get_scale() == 2.0**15  # backed off
    assert sched.last_epoch == 1 and sched.get_last_lr() == [0.05]  # the schedule still moved
    assert all(p.grad is None for p in layer.parameters())

    norm = optimizer_step(layer(x).sum(), opt, sched, clip=1e9, scaler=scaler)
    reference = torch.nn.Linear(4, 2)
    reference.load_state_dict(before)
    reference(x).sum().backward()
    grads = {name: p.grad for name, p in reference.named_parameters() if p.grad is not None}
    assert norm == pytest.approx(float(torch.cat([g.flatten() for g in grads.values()]).norm()))
    for name, grad in grads.items():  # unscaled: a step in true units, at the second step's LR
        assert torch.allclose(layer.state_dict()[name], before[name] - 0.05 * grad, atol=1e-6)


def test_a_precision_for_another_device_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"on cpu: pass devices.precision_for\(device\)"):
        EncoderStage(
            tiny_student(), CONFIG, intent_examples(), FEATURES, tmp_path / "s1.jsonl",
            tmp_path / "ck1", precision=Precision("cuda", torch.bfloat16),
        )  # fmt: skip
    with pytest.raises(ValueError, match="bf16 precision for 'cuda'"):
        DecoderStage(
            tiny_student(), CONFIG, reply_examples(), tmp_path / "s2.jsonl", tmp_path / "ck2",
            precision=Precision("cuda", torch.bfloat16),
        )  # fmt: skip


# ------------------------------------------------------------------------------------ the GPU


@pytest.mark.gpu
@pytest.mark.gpu
@gpu
def test_the_tiny_student_trains_on_a_gpu_in_bf16_like_on_the_cpu(tmp_path: Path) -> None:
    from distill_worker.devices import precision_for

    device = torch.device("cuda", 0)
    if precision_for(device).dtype is not torch.bfloat16:
        pytest.skip("this GPU has no native bf16")
    learn = replace(
        CONFIG, stage1_epochs=10, stage2_epochs=10, stage1_lr=1e-3, stage1_head_lr=1e-2,
        stage2_lr=1e-2, dynamic_weights=False,
    )  # fmt: skip
    cpu, cuda = tiny_student(), tiny_student().to(device)
    dtypes = output_dtypes(cuda)
    s1, _ = stage1(tmp_path / "cuda", cuda, None, learn, dev=False)  # precision_for: bf16
    s2, _ = stage2(tmp_path / "cuda", cuda, None, learn)
    assert s1.precision == s2.precision == Precision("cuda", torch.bfloat16)
    assert dtypes == {torch.bfloat16}
    assert all(p.device == device and p.dtype is torch.float32 for p in cuda.parameters())
    stage1(tmp_path / "cpu", cpu, None, learn, dev=False)
    stage2(tmp_path / "cpu", cpu, None, learn)
    for log in ("s1.jsonl", "s2.jsonl"):
        on_gpu, on_cpu = (
            logged_losses(tmp_path / "cuda" / log),
            logged_losses(tmp_path / "cpu" / log),
        )
        assert len(on_gpu) == 30 and all(math.isfinite(x) for x in on_gpu)
        assert sum(on_gpu[-3:]) < 0.5 * sum(on_gpu[:3]), (log, on_gpu)  # it learns
        # bf16 roundings, growing over the steps (CPU bf16 vs fp32: at most 1.4e-3 relative)
        assert on_gpu[:6] == pytest.approx(on_cpu[:6], rel=1e-2), log
        assert on_gpu == pytest.approx(on_cpu, rel=3e-2), log
    # the checkpoint is on the CPU side: it loads into a CPU student
    resumed = tiny_student(seed=9)
    stage = DecoderStage(
        resumed, learn, reply_examples(), tmp_path / "r.jsonl", tmp_path / "cuda" / "ck2"
    )
    stage.setup()
    assert stage.resumed_from == 30
    assert same_state(resumed.state_dict(), {k: v.cpu() for k, v in cuda.state_dict().items()})
    stage.cleanup()


@pytest.mark.gpu
@pytest.mark.gpu
@gpu
def test_a_student_on_a_gpu_is_exported_from_a_cpu_copy(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    from bundle_runtime.manifest import load_manifest
    from distill_worker.stages.export_onnx import export_bundle

    source = tiny_bundle.path
    manifest = load_manifest(source)
    student = Student(tiny_bundle.student.cfg)
    student.load_state_dict(tiny_bundle.student.state_dict())
    student.to("cuda").train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    exported = export_bundle(
        student, tmp_path / "gpu-bundle", model_version="tiny-gpu",
        intent_labels=manifest.intent_labels, oos_label=manifest.oos_label,
        encoder_tokenizer_json=source / "encoder_tokenizer.json",
        decoder_tokenizer_json=source / "decoder_tokenizer.json",
        special_tokens=manifest.special_tokens, max_source_tokens=48, max_new_tokens=8,
        context_turns=4, handoff_threshold=0.5, metrics={}, run_id=None, int8=False,
        parity_samples=tiny_bundle.samples[:4],
    )  # fmt: skip
    assert exported.parity is not None and exported.parity["passed"]
    assert student.training and next(student.parameters()).device.type == "cuda"
    assert same_state(before, student.state_dict())  # the caller's student is untouched
