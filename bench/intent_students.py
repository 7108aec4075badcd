"""The students of `bench/intents.py`: training one variant, running it in torch and ONNX Runtime.

Variants share the size, the data, the input tokenizer (all-MiniLM-L6-v2's) and the number of
steps; they differ only in the objective and the initialisation:

    ce          structural init (MiniLM's first layers), task cross-entropy only (no KD)
    kd          structural init, stage 1 KD (feature MSE + intent logit KD + CE, dynamic weights)
    kd_random   random init, stage 1 KD (the alternative to structural distillation)
    kd_unlabelled  as kd, plus the --unlabelled messages as KD-only rows (the teacher's intent
                distribution and features, no cross-entropy): the same epochs, so more steps

The helpers return logits and one-request callables rather than scores, so that
`bench/intents.py` can calibrate and score every model (students, teacher, TF-IDF) the same way
and time them side by side; `student_metrics` is the plain argmax score `bench/curriculum.py`
takes. The ONNX Runtime helpers (one thread) run the teacher's exported graph too.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import Tensor

from distill_worker.config import DistillConfig
from distill_worker.data.building import SourceTokenizer
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.encoder_stage import EncoderStage
from distill_worker.stages.evaluate import intent_metrics
from distill_worker.stages.export_onnx import EncoderGraph
from distill_worker.stages.structural import init_student_encoder_from_teacher
from distill_worker.stages.training import pad

VARIANTS = ("ce", "kd", "kd_random", "kd_unlabelled")
_CE_ONLY = {
    "feature_weight": 0.0,
    "intent_kd_weight": 0.0,
    "task_ce_weight": 1.0,
    "dynamic_weights": False,
}


def oos_label(labels: list[str]) -> str | None:
    return "oos" if "oos" in labels else None


def train_student(
    variant: str,
    init_state: dict[str, torch.Tensor],
    vocab_size: int,
    teacher_dim: int,
    examples: list[Any],
    labels: list[str],
    args: argparse.Namespace,
    work: Path,
) -> tuple[Student, float]:
    """Train one variant; returns the student (eval mode) and the seconds it took."""
    weights: dict[str, Any] = _CE_ONLY if variant == "ce" else {}
    config = DistillConfig(
        enc_layers=args.enc_layers, stage1_epochs=args.student_epochs, seed=args.seed, **weights
    )
    torch.manual_seed(args.seed)
    student = Student(
        StudentConfig(
            n_intents=len(labels),
            enc_vocab_size=vocab_size,
            enc_layers=args.enc_layers,
            dec_vocab_size=8,  # the decoder is not used here; keep it tiny
            dec_bos_id=1,
            dec_eos_id=2,
            dec_pad_id=2,
        )
    )
    if variant != "kd_random":
        init_student_encoder_from_teacher(student, init_state, args.enc_layers)
    stage = EncoderStage(
        student, config, examples, teacher_dim, work / f"{variant}.jsonl", work / variant
    )
    started = time.perf_counter()
    stage.setup()
    stage.train()
    stage.cleanup()
    return student.eval(), time.perf_counter() - started


def student_logits(student: Student, source: SourceTokenizer, rows: list[Utterance]) -> Tensor:
    """Intent logits [N, C] (the student's label order), in torch, batches of 128."""
    ids = source.ids([r.turns() for r in rows])
    student.eval()
    with torch.inference_mode():
        return torch.cat(
            [student.encode(*pad(ids[i : i + 128]))[2] for i in range(0, len(ids), 128)]
        ).float()


def student_parameters(student: Student) -> int:
    """Encoder + intent head: what answering an intent runs (the decoder is not counted)."""
    modules = (student.encoder, student.intent_head)
    return sum(p.numel() for m in modules for p in m.parameters())


def student_metrics(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str]
) -> dict[str, Any]:
    """Plain argmax metrics on `dev` (no calibration, no handoff) and the parameter count: the
    quick score `bench/curriculum.py` takes after every epoch."""
    index = {label: i for i, label in enumerate(labels)}
    pred = student_logits(student, source, dev).argmax(-1).tolist()
    metrics: dict[str, Any] = dict(
        intent_metrics(pred, [index[r.intent or ""] for r in dev], labels, oos_label(labels))
    )
    metrics["parameters"] = student_parameters(student)
    return metrics


def student_torch_call(student: Student, source: SourceTokenizer) -> Callable[[Utterance], Tensor]:
    """One request in torch: tokenization (as serving builds the input) + the encoder and head."""
    student.eval()

    def call(row: Utterance) -> Tensor:
        with torch.inference_mode():
            return student.encode(*pad(source.ids([row.turns()])))[2]

    return call


# ------------------------------------------------------------------------------ ONNX Runtime


def export_student_onnx(student: Student, work: Path, name: str) -> tuple[Path, Path]:
    """The student's encoder graph (what serving runs) as FP32 and dynamically quantized INT8.
    Tracer warnings are silenced: the graphs' dev accuracy beside torch's is the check."""
    fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
    ids = torch.tensor([[101, 2000, 2001, 102]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            EncoderGraph(student),
            (ids, torch.ones_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden", "pooled", "intent_logits"],
            dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
            opset_version=17,
            dynamo=False,
        )
    student.eval()
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def ort_session(path: Path) -> ort.InferenceSession:
    """A CPU session on one thread, as each model is timed (a per-core figure)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_intent_logits(session: ort.InferenceSession, ids: Tensor, mask: Tensor) -> Tensor:
    """The graph's `intent_logits` output for one padded batch."""
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    return torch.from_numpy(np.asarray(session.run(["intent_logits"], feed)[0]))


def onnx_student_logits(
    session: ort.InferenceSession, source: SourceTokenizer, rows: list[Utterance]
) -> Tensor:
    """Intent logits [N, C] of an exported student on `rows`, batches of 128."""
    ids = source.ids([r.turns() for r in rows])
    return torch.cat(
        [ort_intent_logits(session, *pad(ids[i : i + 128])) for i in range(0, len(ids), 128)]
    ).float()


def student_onnx_call(
    session: ort.InferenceSession, source: SourceTokenizer
) -> Callable[[Utterance], Tensor]:
    """One request as served: tokenization + the exported encoder graph in ONNX Runtime."""

    def call(row: Utterance) -> Tensor:
        return ort_intent_logits(session, *pad(source.ids([row.turns()])))

    return call
