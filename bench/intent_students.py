"""The students of `bench/intents.py`: training one variant, measuring it in torch and ONNX Runtime.

Variants share the size, the data, the input tokenizer (all-MiniLM-L6-v2's) and the number of
steps; they differ only in the objective and the initialisation:

    ce          structural init (MiniLM's first layers), task cross-entropy only (no KD)
    kd          structural init, stage 1 KD (feature MSE + intent logit KD + CE, dynamic weights)
    kd_random   random init, stage 1 KD (the alternative to structural distillation)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from distill_worker.config import DistillConfig
from distill_worker.data.building import SourceTokenizer
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.encoder_stage import EncoderStage
from distill_worker.stages.evaluate import intent_metrics, measure_latency, predict_intents
from distill_worker.stages.export_onnx import EncoderGraph
from distill_worker.stages.structural import init_student_encoder_from_teacher
from distill_worker.stages.training import pad

LATENCY_RUNS = 100
VARIANTS = ("ce", "kd", "kd_random")
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


def student_metrics(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str]
) -> dict[str, Any]:
    index = {label: i for i, label in enumerate(labels)}
    ids = source.ids([r.turns() for r in dev])
    pred, _ = predict_intents(student, [pad(ids[i : i + 128]) for i in range(0, len(ids), 128)])
    metrics = intent_metrics(pred, [index[r.intent or ""] for r in dev], labels, oos_label(labels))
    one = pad(ids[:1])
    metrics["latency_torch"] = measure_latency(lambda: student.encode(*one), LATENCY_RUNS, 10)
    enc_params = sum(p.numel() for p in student.encoder.parameters())
    metrics["parameters"] = enc_params + sum(p.numel() for p in student.intent_head.parameters())
    return metrics


def onnx_metrics(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str], work: Path
) -> dict[str, Any]:
    """The student's encoder graph (what serving runs) in ONNX Runtime, FP32 and INT8, 1 thread."""
    fp32 = work / "encoder.onnx"
    ids = torch.tensor([[101, 2000, 2001, 102]])
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
    int8 = work / "encoder.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    index = {label: i for i, label in enumerate(labels)}
    dev_ids = source.ids([r.turns() for r in dev])
    gold = [index[r.intent or ""] for r in dev]
    out: dict[str, Any] = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        pred: list[int] = []
        for i in range(0, len(dev_ids), 128):
            batch, mask = pad(dev_ids[i : i + 128])
            logits = session.run(
                ["intent_logits"], {"input_ids": batch.numpy(), "attention_mask": mask.numpy()}
            )[0]
            pred.extend(np.asarray(logits).argmax(-1).tolist())
        one, one_mask = (t.numpy() for t in pad(dev_ids[:1]))
        metrics = intent_metrics(pred, gold, labels, oos_label(labels))
        metrics["latency"] = measure_latency(
            lambda s=session, a=one, m=one_mask: s.run(
                ["intent_logits"], {"input_ids": a, "attention_mask": m}
            ),
            LATENCY_RUNS,
            10,
        )
        out[name] = metrics
    return out
