"""One distillation run, from a labelled file or a frozen snapshot to a parity-checked bundle.

    data -> teacher (encoder) -> replies (responder) -> stage1 (encoder) -> stage2 (decoder +
    reward) -> evaluate (held-out split) -> export

Each step is one function, found by its `[n/7]` log line: steps 1-3 in
`distill_worker.prepare_steps` (they build the `RunState`), steps 4-7 in
`distill_worker.train_steps`. What the run is trained with is the request's `RunConfig`; it is
logged as JSON when the run starts and written to the work folder's `config.json`.

Every step leaves its result in the run's work folder (fine-tuned encoder teacher, stage
checkpoints, teacher replies in the cache), so a run that stops part-way continues where it was
when it is started again with the same work folder and config.

Hooks for the continual loop: `on_step(name, fraction)` is called at the start of each step
with the run's overall progress; `should_stop()` is asked before each step and a True answer
raises `RunCancelled` (the work folder keeps what was done). An incremental run takes its data
from a snapshot (`snapshot_dir`: its fixed held-out split instead of a fresh one) and its
initial weights from the champion bundle (`warm_start_bundle`).

Devices and ranks: the run trains on `RunConfig.device` (`distill_worker.devices`; its first log
line and `metrics["device"]` say which), and under torchrun every rank runs this function inside
`distill_worker.ranks.whole_run`: rank 0 labels, evaluates and exports, all ranks train (see
`distill_worker.ranks` for the split). Every rank returns the same result.

Errors: `RunCancelled` (asked to stop), `ValueError` (unusable data or config),
`distill_worker.data.snapshots.SnapshotError`, `distill_worker.stages.export_onnx.ExportError`.
A champion that cannot seed the run (no torch weights, corrupted, another architecture) is not an
error: the run starts from the teacher instead and `metrics["warm_start"]["skipped"]` says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from bundle_runtime.manifest import verify_bundle
from distill_worker import distributed, ranks
from distill_worker.devices import describe, precision_for
from distill_worker.prepare_steps import (
    fit_encoder_teacher,
    load_data,
    prepare_student,
    resolve_reply_tokens,
)
from distill_worker.run_request import DistillRequest, DistillResult
from distill_worker.train_steps import evaluate, export, train_decoder, train_encoder

__all__ = ["STEP_START", "DistillRequest", "DistillResult", "RunCancelled", "run_distillation"]

Log = Callable[[str], None]

# Each step's share of a run starts here (rough shares of wall time on a CPU machine).
STEP_START = {
    "data": 0.0,
    "teacher": 0.05,
    "replies": 0.2,
    "stage1": 0.35,
    "stage2": 0.55,
    "evaluate": 0.8,
    "export": 0.9,
}


class RunCancelled(Exception):
    """`should_stop()` answered True before `step`; the work folder keeps what was done, so the
    same request (same work folder and config) resumes from there."""

    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(f"distillation run cancelled before step {step!r} (should_stop)")


def run_distillation(req: DistillRequest, log: Log = print) -> DistillResult:
    started = time.monotonic()
    log = ranks.main_log(log)

    def step(name: str, *, every_rank: bool = True) -> None:
        asked = req.should_stop is not None and req.should_stop()
        if every_rank:  # under torchrun: every rank stops together
            asked = distributed.agree_stop(asked)
        if asked:
            log(f"      stopping before {name}: the run was asked to stop")
            raise RunCancelled(name)
        if req.on_step is not None and distributed.is_main():
            req.on_step(name, STEP_START[name])

    device = ranks.run_device(req.config.device)
    precision = precision_for(device, req.config.mixed_precision)
    where = _where(device, precision.name)
    log(f"      device: {where['device']}, {where['precision']}" + _ranks_note(where))
    step("data")
    if distributed.is_main():
        req.work_dir.mkdir(parents=True, exist_ok=True)
        (req.work_dir / "config.json").write_text(req.config.to_json(), encoding="utf-8")
    log(f"      config: {req.config.to_json()}")
    torch.manual_seed(req.config.distill.seed)
    data = load_data(req, log)
    step("teacher")
    with ranks.main_first():  # rank 0 fine-tunes and saves it; the others load it
        teacher, source = fit_encoder_teacher(req, data, log, device)
    step("replies")
    req = resolve_reply_tokens(req, data, log)  # the config's 0: from the data's replies
    state = prepare_student(req, data, teacher, source, log)
    state.student.to(device)
    state.precision = precision
    state.metrics["device"] = where
    step("stage1")
    train_encoder(req, state, log)
    step("stage2")
    train_decoder(req, state, log)
    if distributed.is_main():
        step("evaluate", every_rank=False)
        evaluate(req, state, log)
        step("export", every_rank=False)
        manifest = export(req, state, log, started)
    distributed.barrier()  # the other ranks wait for rank 0's bundle
    if not distributed.is_main():
        manifest = verify_bundle(req.out_dir)
        return DistillResult(manifest=manifest, bundle_dir=req.out_dir, metrics=manifest.metrics)
    return DistillResult(manifest=manifest, bundle_dir=req.out_dir, metrics=state.metrics)


def _where(device: torch.device, precision: str) -> dict[str, object]:
    """The run's `metrics["device"]`: where it trained, in which precision, on how many ranks."""
    ctx = distributed.current()
    return {
        "device": describe(device),
        "precision": precision,
        "world_size": ctx.world_size if ctx is not None else 1,
        "backend": ctx.backend if ctx is not None else None,
    }


def _ranks_note(where: dict[str, object]) -> str:
    if where["world_size"] == 1:
        return ""
    return f"; rank 0 of {where['world_size']} ({where['backend']}, one process per rank)"
