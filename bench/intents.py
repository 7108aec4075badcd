"""Intent classification, side by side in one run, on BANKING77 and CLINC150 (../shared/data):

    TF-IDF + logistic regression | encoder teacher (MiniLM fine-tuned) |
    student, CE only (no KD)     | student, stage 1 KD (feature + logit KD + CE)

Both students have the same size, the same structural init (the teacher's first layers) and the
same number of steps; only the objective differs. Reports accuracy, macro-F1, OOS recall (CLINC),
parameters, and CPU latency per request at batch 1 (1 thread each): torch for the teacher and
the students, and the student's encoder graph in ONNX Runtime FP32 and INT8 (what serving runs).

    .venv/bin/python bench/intents.py --json bench/results/intents.json
    [--datasets banking77 clinc150] [--teacher-epochs 3] [--student-epochs 4] [--max-train N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.building import SourceTokenizer, intent_examples, stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.encoder_stage import EncoderStage  # noqa: E402
from distill_worker.stages.evaluate import intent_metrics, measure_latency, predict_intents  # noqa: E402
from distill_worker.stages.export_onnx import EncoderGraph  # noqa: E402
from distill_worker.stages.structural import init_student_encoder_from_teacher  # noqa: E402
from distill_worker.stages.training import pad  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LATENCY_RUNS = 100


def single_thread(fn: Any) -> Any:
    """Latency is measured at batch 1 on one thread for every model (a fair per-core figure)."""

    def run() -> Any:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(previous)

    return run


def load(name: str, max_train: int | None, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    if name == "banking77":
        rows = load_utterances(DATA / "banking77" / "train.csv")
        train, dev = stratified_split(rows, 0.1, seed)
    elif name == "clinc150":
        path = DATA / "clinc150" / "data_full.json"
        train, dev = load_utterances(path, split="train"), load_utterances(path, split="val")
    else:
        raise SystemExit(f"unknown dataset {name}")
    if max_train is not None and len(train) > max_train:
        train, _ = stratified_split(train, 1 - max_train / len(train), seed)
    return train, dev


def tfidf(train: list[Utterance], dev: list[Utterance], labels: list[str]) -> dict[str, Any]:
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(C=10.0, max_iter=2000),
    )
    started = time.perf_counter()
    model.fit([r.text for r in train], [r.intent for r in train])
    fit_s = time.perf_counter() - started
    pred = model.predict([r.text for r in dev])
    index = {label: i for i, label in enumerate(labels)}
    metrics = intent_metrics(
        [index[p] for p in pred], [index[r.intent or ""] for r in dev], labels, _oos(labels)
    )
    text = dev[0].text
    metrics["latency"] = measure_latency(lambda: model.predict([text]), LATENCY_RUNS, 10)
    metrics["train_seconds"] = round(fit_s, 1)
    return metrics


def _oos(labels: list[str]) -> str | None:
    return "oos" if "oos" in labels else None


def teacher_model(
    train: list[Utterance], args: argparse.Namespace, source: SourceTokenizer
) -> tuple[EncoderTeacher, float]:
    teacher = load_encoder(locate_minilm())
    started = time.perf_counter()
    teacher.finetune(
        [source.text(r.turns()) for r in train],
        [r.intent or "" for r in train],
        epochs=args.teacher_epochs,
        lr=args.teacher_lr,
        seed=args.seed,
    )
    return teacher, time.perf_counter() - started


def student_run(
    kd: bool,
    teacher: EncoderTeacher,
    examples: list[Any],
    labels: list[str],
    args: argparse.Namespace,
    work: Path,
) -> tuple[Student, float]:
    weights = (
        {"feature_weight": 0.7, "intent_kd_weight": 0.2, "task_ce_weight": 0.1}
        if kd
        else {
            "feature_weight": 0.0,
            "intent_kd_weight": 0.0,
            "task_ce_weight": 1.0,
            "dynamic_weights": False,
        }
    )
    config = DistillConfig(
        enc_layers=args.enc_layers, stage1_epochs=args.student_epochs, seed=args.seed, **weights
    )
    student = Student(
        StudentConfig(
            n_intents=len(labels),
            enc_vocab_size=teacher.vocab_size,
            enc_layers=args.enc_layers,
            dec_vocab_size=8,  # the decoder is not used here; keep it tiny
            dec_bos_id=1,
            dec_eos_id=2,
            dec_pad_id=2,
        )
    )
    init_student_encoder_from_teacher(student, teacher.teacher_state_dict(), args.enc_layers)
    name = "kd" if kd else "ce"
    stage = EncoderStage(
        student, config, examples, teacher.hidden_size, work / f"{name}.jsonl", work / name
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
    metrics = intent_metrics(pred, [index[r.intent or ""] for r in dev], labels, _oos(labels))
    one = pad(ids[:1])
    metrics["latency_torch"] = measure_latency(lambda: student.encode(*one), LATENCY_RUNS, 10)
    enc_params = sum(p.numel() for p in student.encoder.parameters())
    metrics["encoder_parameters"] = enc_params + sum(
        p.numel() for p in student.intent_head.parameters()
    )
    return metrics


def onnx_latency(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str], work: Path
) -> dict[str, Any]:
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
    int8 = work / "encoder.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    out: dict[str, Any] = {}
    index = {label: i for i, label in enumerate(labels)}
    dev_ids = source.ids([r.turns() for r in dev])
    gold = [index[r.intent or ""] for r in dev]
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
        out[name] = {
            "accuracy": float(np.mean(np.array(pred) == np.array(gold))),
            "latency": measure_latency(
                lambda s=session, a=one, m=one_mask: s.run(
                    ["intent_logits"], {"input_ids": a, "attention_mask": m}
                ),
                LATENCY_RUNS,
                10,
            ),
        }
    return out


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    train, dev = load(name, args.max_train, args.seed)
    labels = sorted({r.intent for r in train if r.intent} | {r.intent for r in dev if r.intent})
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=128, context_turns=4)
    print(f"== {name}: {len(train)} train, {len(dev)} dev, {len(labels)} intents", flush=True)
    result: dict[str, Any] = {"train_rows": len(train), "dev_rows": len(dev)}
    result["tfidf_lr"] = tfidf(train, dev, labels)
    print("tfidf", result["tfidf_lr"]["accuracy"], flush=True)
    teacher, seconds = teacher_model(train, args, source)
    index = {label: i for i, label in enumerate(labels)}
    texts = [source.text(r.turns()) for r in dev]
    t_logits = torch.cat(
        [teacher.intent_logits(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    )
    t_index = [index[label] for label in teacher.labels]
    t_pred = [t_index[i] for i in t_logits.argmax(-1).tolist()]
    teacher_metrics = intent_metrics(
        t_pred, [index[r.intent or ""] for r in dev], labels, _oos(labels)
    )
    teacher_metrics["train_seconds"] = round(seconds, 1)
    teacher_metrics["parameters"] = sum(p.numel() for p in teacher.bert.parameters())
    teacher.threads = 1
    teacher_metrics["latency_torch"] = measure_latency(
        single_thread(lambda: teacher.intent_logits(texts[:1])), LATENCY_RUNS, 10
    )
    result["teacher"] = teacher_metrics
    print("teacher", teacher_metrics["accuracy"], flush=True)
    examples = intent_examples(train, teacher.labels, source, teacher)
    student_labels = teacher.labels
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kd in (False, True):
            student, seconds = student_run(kd, teacher, examples, student_labels, args, work)
            metrics = student_metrics(student, source, dev, student_labels)
            metrics["train_seconds"] = round(seconds, 1)
            if kd:
                metrics["onnx"] = onnx_latency(student, source, dev, student_labels, work)
            result["student_kd" if kd else "student_ce"] = metrics
            print("student", "kd" if kd else "ce", metrics["accuracy"], flush=True)
    t_ms = teacher_metrics["latency_torch"]["median_ms"]
    kd_res = result["student_kd"]
    result["ratios"] = {
        "kd_accuracy_vs_teacher": kd_res["accuracy"] / teacher_metrics["accuracy"],
        "kd_minus_ce_accuracy": kd_res["accuracy"] - result["student_ce"]["accuracy"],
        "kd_minus_tfidf_accuracy": kd_res["accuracy"] - result["tfidf_lr"]["accuracy"],
        "speedup_torch": t_ms / kd_res["latency_torch"]["median_ms"],
        "speedup_onnx_fp32": t_ms / kd_res["onnx"]["fp32"]["latency"]["median_ms"],
        "speedup_onnx_int8": t_ms / kd_res["onnx"]["int8"]["latency"]["median_ms"],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["banking77", "clinc150"])
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--enc-layers", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {"args": {k: str(v) for k, v in vars(args).items()}}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        print(json.dumps({name: results[name]["ratios"]}, indent=2), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
