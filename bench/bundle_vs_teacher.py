"""A run's bundle against the encoder teacher it learned from: accuracy and speed, like with like.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bundle_vs_teacher.py --bundle B \\
        --teacher data/runs/<run>/encoder_teacher --data dev.csv [--json out.json]

`bench/intents.py` trains its own teacher and students; this measures what a real
`chatdistill distill` run produced (its bundle, and the `encoder_teacher` in its work folder),
on rows it never saw (`--data`: any `--data` format of `chatdistill distill`). The models:

    teacher, torch          `EncoderTeacher.intent_logits`, its own tokenizer
    teacher, ONNX FP32      its backbone, mean pooling and head exported (`bench/intent_teacher`)
    student, torch          the bundle's torch weights (`student.safetensors`), encoder + head
    student, ONNX FP32/INT8 the bundle through `OnnxStudent`, the class serving loads

Accuracy: every labelled row answered, argmax of each model's logits (no handoff: the teacher has
no threshold to compare with; `chatdistill eval intents` reports the handoff as served).
Speed: one request at a time, batch 1, one thread, tokenization included in every timing, the
models taking turns on the same messages (`bench/intent_latency.py`), so that load from other
work falls on each alike. The ratios divide like by like: torch by torch, ONNX FP32 by ONNX FP32,
and the teacher's ONNX FP32 by the served student (INT8 where the bundle has it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.intent_latency import (  # noqa: E402
    LATENCY_MESSAGES,
    LATENCY_RUNS,
    LATENCY_WARMUP,
    interleaved_latency,
)
from bench.intent_students import ort_session, student_parameters  # noqa: E402
from bench.intent_teacher import (  # noqa: E402
    export_teacher_onnx,
    teacher_onnx_call,
    teacher_parameters,
)
from bundle_runtime.onnx_student import OnnxStudent  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.warm_start import WEIGHTS  # noqa: E402
from distill_worker.teacher.base import TeacherError  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher  # noqa: E402

TEACHER_TORCH, TEACHER_ONNX = "teacher torch", "teacher onnx fp32"
STUDENT_TORCH = "student torch"

Logits = Callable[[list[str]], torch.Tensor]  # formatted texts -> intent logits [N, C]


def accuracy(logits: Logits, labels: Sequence[str], texts: list[str], gold: list[str]) -> float:
    """Share of rows whose argmax label is the gold one, in batches of 64."""
    right = 0
    for start in range(0, len(texts), 64):
        best = logits(texts[start : start + 64]).argmax(-1).tolist()
        right += sum(labels[i] == g for i, g in zip(best, gold[start : start + 64], strict=True))
    return right / len(texts)


def torch_student(bundle: Path, served: OnnxStudent) -> tuple[Student, Logits]:
    """The bundle's torch weights in a `Student`, fed by the bundle's own tokenization."""
    student = Student(StudentConfig.from_dict(served.manifest.student_config))
    student.load_state_dict(load_file(str(bundle / WEIGHTS)))
    student.eval()

    def logits(texts: list[str]) -> torch.Tensor:
        ids, mask = (torch.from_numpy(a) for a in served.encode_texts(texts))
        with torch.inference_mode():
            return student.encode(ids, mask)[2]

    return student, logits


def onnx_student(served: OnnxStudent) -> Logits:
    return lambda texts: torch.from_numpy(
        np.asarray(served.intent_logits(*served.encode_texts(texts)))
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = [r for r in load_utterances(args.data, split=args.split) if r.intent]
    if not rows:
        raise SystemExit(f"{args.data}: no labelled rows to score")
    try:
        teacher = EncoderTeacher.load(args.teacher)
    except TeacherError as exc:
        raise SystemExit(f"--teacher: {exc}") from None
    teacher.threads = 1
    fp32 = OnnxStudent(args.bundle, precision="fp32")
    sessions = {"fp32": fp32}
    if fp32.manifest.graphs.get("int8"):  # OnnxStudent refuses a precision the bundle lacks
        sessions["int8"] = OnnxStudent(args.bundle, precision="int8")
    student, student_logits = torch_student(args.bundle, fp32)
    texts = [fp32.source_of(r.turns()) for r in rows]
    gold = [r.intent or "" for r in rows]
    student_labels = fp32.manifest.intent_labels

    with tempfile.TemporaryDirectory() as tmp:
        teacher_onnx = teacher_onnx_call(
            ort_session(export_teacher_onnx(teacher, Path(tmp) / "teacher.onnx")), teacher
        )
        logits: dict[str, tuple[Logits, Sequence[str]]] = {
            TEACHER_TORCH: (teacher.intent_logits, teacher.labels),
            TEACHER_ONNX: (lambda t: torch.cat([teacher_onnx(x) for x in t]), teacher.labels),
            STUDENT_TORCH: (student_logits, student_labels),
            **{f"student onnx {p}": (onnx_student(s), student_labels) for p, s in sessions.items()},
        }
        print(f"scoring {len(logits)} models on {len(rows)} rows", flush=True)
        scores = {name: accuracy(f, labels, texts, gold) for name, (f, labels) in logits.items()}
        messages = rows[: args.messages]
        calls = {name: _one_request(f, fp32) for name, (f, _) in logits.items()}
        print(f"timing them: {args.runs} rounds over {len(messages)} messages", flush=True)
        latency = interleaved_latency(calls, messages, args.runs, LATENCY_WARMUP)

    served = "student onnx int8" if "int8" in sessions else "student onnx fp32"
    table = {name: {"accuracy": round(scores[name], 4), **latency[name]} for name in logits}
    table[TEACHER_TORCH]["parameters"] = table[TEACHER_ONNX]["parameters"] = teacher_parameters(
        teacher
    )
    student_params = student_parameters(student)
    for name in logits:
        if name.startswith("student"):
            table[name]["parameters"] = student_params

    def speedup(slow: str, fast: str) -> float:
        return round(latency[slow]["median_ms"] / latency[fast]["median_ms"], 2)

    return {
        "bundle": str(args.bundle),
        "teacher": {"folder": str(args.teacher), "model": teacher.model_type},
        "rows": len(rows),
        "models": table,
        "served": served,
        "share_of_teacher": {
            "torch": round(scores[STUDENT_TORCH] / scores[TEACHER_TORCH], 4),
            "served": round(scores[served] / scores[TEACHER_TORCH], 4),
        },
        "speedup": {
            "torch / torch": speedup(TEACHER_TORCH, STUDENT_TORCH),
            "onnx fp32 / onnx fp32": speedup(TEACHER_ONNX, "student onnx fp32"),
            f"teacher onnx fp32 / {served}": speedup(TEACHER_ONNX, served),
        },
        "protocol": (
            f"accuracy: argmax, every one of {len(rows)} labelled rows answered; latency: batch "
            f"1, 1 thread, tokenization included, median of {args.runs} calls per model, the "
            f"models taking turns on the same {len(messages)} messages"
        ),
    }


def _one_request(logits: Logits, served: OnnxStudent) -> Callable[[Utterance], object]:
    """One customer message: its turns formatted as serving formats them, then the model."""
    return lambda row: logits([served.source_of(row.turns())])


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['rows']} rows; {result['protocol']}")
    print(f"{'model':<20} {'params':>11} {'accuracy':>9} {'median ms':>10} {'p95 ms':>8}")
    for name, m in result["models"].items():
        print(
            f"{name:<20} {m['parameters']:>11,} {m['accuracy']:>9.4f} "
            f"{m['median_ms']:>10.2f} {m['p95_ms']:>8.2f}"
        )
    share = result["share_of_teacher"]
    print(f"student / teacher accuracy: torch {share['torch']:.4f}, served {share['served']:.4f}")
    print("speed-up: " + ", ".join(f"{k} x{v}" for k, v in result["speedup"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True, help="a saved encoder teacher")
    parser.add_argument("--data", type=Path, required=True, help="rows the run never saw")
    parser.add_argument("--split", default="val", help="split of a CLINC150 JSON")
    parser.add_argument("--messages", type=int, default=LATENCY_MESSAGES)
    parser.add_argument("--runs", type=int, default=LATENCY_RUNS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    print_table(result)


if __name__ == "__main__":
    main()
