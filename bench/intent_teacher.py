"""The encoder teacher of `bench/intents.py` (also used by `bench/curriculum.py`): fine-tuned
once and cached, scored by plain argmax, exported to ONNX and called one request at a time as
served; and all-MiniLM-L6-v2, loaded once, the students' init and input vocabulary."""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from bench.intent_scoring import in_label_order
from bench.intent_students import oos_label
from distill_worker.data.building import SourceTokenizer
from distill_worker.data.loaders import Utterance
from distill_worker.model.student import mean_pool
from distill_worker.stages.evaluate import intent_metrics
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm
from distill_worker.teacher.mpnet_package import prepare_mpnet


def teacher_model(
    name: str, train: list[Utterance], args: argparse.Namespace, source: SourceTokenizer
) -> tuple[EncoderTeacher, float]:
    """The fine-tuned teacher from the cache, or fine-tuned now (and cached); seconds spent."""
    key = f"{name}-{args.teacher}-e{args.teacher_epochs}-lr{args.teacher_lr:g}-s{args.seed}"
    cached = args.teacher_cache / f"{key}-n{len(train)}"
    if (cached / "meta.json").is_file():
        teacher = EncoderTeacher.load(cached)
        return teacher, float(teacher.meta.get("finetune", {}).get("seconds", 0.0))
    if args.teacher == "mpnet":
        folder = prepare_mpnet(args.teacher_cache / "all-mpnet-base-v2")
    else:
        folder = locate_minilm()
    teacher = load_encoder(folder)
    started = time.perf_counter()
    teacher.finetune(
        [source.text(r.turns()) for r in train],
        [r.intent or "" for r in train],
        epochs=args.teacher_epochs,
        lr=args.teacher_lr,
        seed=args.seed,
    )
    teacher.save(cached)
    return teacher, time.perf_counter() - started


def teacher_metrics(
    teacher: EncoderTeacher, texts: list[str], gold: list[int], labels: list[str]
) -> dict[str, Any]:
    """Plain argmax metrics of the teacher (no calibration, no handoff), for bench/curriculum.py."""
    pred = in_label_order(teacher.intent_logits(texts), teacher.labels, labels).argmax(-1)
    metrics: dict[str, Any] = dict(intent_metrics(pred.tolist(), gold, labels, oos_label(labels)))
    metrics["model"] = teacher.model_type
    metrics["parameters"] = teacher_parameters(teacher)
    return metrics


def teacher_parameters(teacher: EncoderTeacher) -> int:
    head = teacher.head.parameters() if teacher.head is not None else iter(())
    return sum(p.numel() for p in [*teacher.backbone.parameters(), *head])


class TeacherGraph(nn.Module):
    """input_ids, attention_mask [B,S] -> intent_logits [B,C]: the teacher's backbone, its mean
    pooling over real tokens (`EncoderTeacher._pooled`) and its head, as one exportable graph."""

    def __init__(self, teacher: EncoderTeacher) -> None:
        super().__init__()
        assert teacher.head is not None
        self.backbone, self.head = teacher.backbone, teacher.head

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        logits: Tensor = self.head(mean_pool(hidden.last_hidden_state, attention_mask))
        return logits


def export_teacher_onnx(teacher: EncoderTeacher, path: Path) -> Path:
    """The teacher's graph in ONNX (opset 17, the TorchScript exporter, as the student's); its
    tracer warnings are silenced, the export is checked against torch instead (`run_teacher`)."""
    ids = torch.tensor([[teacher.cls_id, 2000, 2001, teacher.sep_id]])
    teacher.backbone.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TeacherGraph(teacher),
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["intent_logits"],
            dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def teacher_onnx_call(
    session: ort.InferenceSession, teacher: EncoderTeacher
) -> Callable[[str], Tensor]:
    """One request (the formatted text) as served: the teacher's tokenizer + the exported graph."""

    def call(text: str) -> Tensor:
        encoded = teacher.tokenizer.encode_batch([text])
        feed = {
            "input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
        }
        return torch.from_numpy(np.asarray(session.run(["intent_logits"], feed)[0]))

    return call


@functools.cache
def minilm() -> EncoderTeacher:
    """all-MiniLM-L6-v2, loaded once: the students' structural init and input vocabulary."""
    return load_encoder(locate_minilm())
