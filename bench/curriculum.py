"""Stage-1 curriculum tiers, side by side in one run, on a BANKING77 subset (../shared/data):

    off (curriculum_tiers 1) | tiers N, curriculum_epochs 1 | tiers N, curriculum_epochs 2

at a full budget (--epochs, the default 4) and a short one (--short-epochs, 1), every variant
from the same initial student (MiniLM's first layers, the same intent head) per seed, with the
same data, steps and seed. The encoder teacher is fine-tuned once (cached like
`bench/intents.py`). Reports held-out accuracy and macro-F1 per seed, accuracy after every epoch
(a curriculum is said to help early training more than the final result), the mean difference
from "off", and how the teacher's doubt spreads over the tiers. The tables are printed (and the
JSON written) after every seed, over the seeds done so far, so a stopped run keeps its figures.
With the defaults, about half of one core: the teacher ~8 min (once, then cached), ~17 min a seed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/curriculum.py [--seeds 0 1] [--intents 24]
    [--train-per-intent 40] [--dev-per-intent 40] [--json bench/results/curriculum.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intent_data import DATA  # noqa: E402
from bench.intent_students import student_metrics  # noqa: E402
from bench.intent_teacher import teacher_metrics, teacher_model  # noqa: E402
from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.building import SourceTokenizer, intent_examples  # noqa: E402
from distill_worker.data.curriculum import assign_tiers, difficulty  # noqa: E402
from distill_worker.data.examples import IntentExample  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.model.student import Student, StudentConfig  # noqa: E402
from distill_worker.stages.encoder_stage import EncoderStage  # noqa: E402
from distill_worker.stages.structural import init_student_encoder_from_teacher  # noqa: E402
from distill_worker.teacher.encoder import load_encoder, locate_minilm  # noqa: E402


def subset(
    rows: list[Utterance], n_intents: int, n_train: int, n_dev: int, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """`n_intents` intents drawn at random among those with enough rows; of each, `n_dev` held
    out and `n_train` to train on (exact counts, so every intent weighs the same)."""
    by_intent: dict[str, list[Utterance]] = defaultdict(list)
    for row in rows:
        by_intent[row.intent or ""].append(row)
    eligible = sorted(i for i, group in by_intent.items() if len(group) >= n_train + n_dev)
    if len(eligible) < n_intents:
        raise SystemExit(
            f"--intents {n_intents}: only {len(eligible)} intents have "
            f"{n_train + n_dev} rows; lower --intents or the per-intent counts"
        )
    rng = random.Random(seed)
    train: list[Utterance] = []
    dev: list[Utterance] = []
    for intent in sorted(rng.sample(eligible, n_intents)):
        group = list(by_intent[intent])
        rng.shuffle(group)
        dev.extend(group[:n_dev])
        train.extend(group[n_dev : n_dev + n_train])
    rng.shuffle(train)
    return train, dev


def tier_profile(examples: list[IntentExample], n_tiers: int) -> list[dict[str, Any]]:
    """Per tier: rows, mean and max teacher doubt, how many intents it holds (a first tier
    with few intents means the first steps only see those)."""
    tiers = assign_tiers(examples, n_tiers)
    out = []
    for tier in range(n_tiers):
        members = [e for e, t in zip(examples, tiers, strict=True) if t == tier]
        doubt = [difficulty(e) for e in members]
        out.append(
            {
                "tier": tier,
                "rows": len(members),
                "mean_doubt": statistics.fmean(doubt),
                "max_doubt": max(doubt),
                "intents": len({e.label for e in members}),
            }
        )
    return out


def initial_student(
    labels: list[str], vocab_size: int, init: Any, layers: int, seed: int
) -> Student:
    """The student every variant of one seed starts from (as `bench/intent_students.py` builds
    its `kd` student: MiniLM's first `layers` layers, a seeded intent head)."""
    torch.manual_seed(seed)
    student = Student(
        StudentConfig(
            n_intents=len(labels),
            enc_vocab_size=vocab_size,
            enc_layers=layers,
            dec_vocab_size=8,  # the decoder is not used here; keep it tiny
            dec_bos_id=1,
            dec_eos_id=2,
            dec_pad_id=2,
        )
    )
    init_student_encoder_from_teacher(student, init, layers)
    return student


def run_variant(
    start: Student,
    config: DistillConfig,
    examples: list[IntentExample],
    teacher_dim: int,
    evaluate: Any,
    work: Path,
) -> dict[str, Any]:
    """Real stage 1 on a copy of `start`, stopped after every epoch to measure the dev set
    (evaluation takes no random numbers, so the run is the one an uninterrupted stage does)."""
    student = copy.deepcopy(start)
    stage = EncoderStage(student, config, examples, teacher_dim, work / "log.jsonl", work / "ckpt")
    per_epoch = math.ceil(len(examples) / config.stage1_batch_size)
    started, curve = time.perf_counter(), []
    stage.setup()
    metrics: dict[str, Any] = {"completed": False}
    while not metrics["completed"]:
        metrics = stage.train(max_steps=per_epoch)
        final = evaluate(student)
        curve.append(final["accuracy"])
    stage.cleanup()
    return {
        "accuracy": final["accuracy"],
        "macro_f1": final["macro_f1"],
        "accuracy_per_epoch": curve,
        "steps": metrics["step"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def variants(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(name, stage1_epochs, curriculum_tiers, curriculum_epochs) for the short budget, then the
    full one; curriculum_epochs 2 only where it differs from 1."""
    out = []
    for budget in (args.short_epochs, args.epochs):
        out.append(("off", budget, 1, 1))
        out.append((f"t{args.tiers}e1", budget, args.tiers, 1))
        if budget > 1:
            out.append((f"t{args.tiers}e2", budget, args.tiers, 2))
    return out


def print_tables(results: dict[str, Any], seeds: list[int]) -> None:
    """Per budget and variant: per-seed accuracy / macro-F1, means, and mean diff vs off."""
    for budget, runs in results["runs"].items():
        print(f"\n== stage1_epochs {budget} (accuracy / macro-F1 per seed; diff = paired, points)")
        head = "".join(f"  seed {s:<8}" for s in seeds)
        print(f"{'variant':<8}{head}  {'mean acc':>8}  {'mean F1':>8}  {'d acc':>6}  {'d F1':>6}")
        off = runs["off"]
        for name, per_seed in runs.items():
            cells = "".join(
                f"  {per_seed[str(s)]['accuracy']:.4f}/{per_seed[str(s)]['macro_f1']:.4f}"
                for s in seeds
            )
            acc = [per_seed[str(s)]["accuracy"] for s in seeds]
            f1 = [per_seed[str(s)]["macro_f1"] for s in seeds]
            d_acc = [a - off[str(s)]["accuracy"] for a, s in zip(acc, seeds, strict=True)]
            d_f1 = [f - off[str(s)]["macro_f1"] for f, s in zip(f1, seeds, strict=True)]
            print(
                f"{name:<8}{cells}  {statistics.fmean(acc):8.4f}  {statistics.fmean(f1):8.4f}"
                f"  {100 * statistics.fmean(d_acc):+6.2f}  {100 * statistics.fmean(d_f1):+6.2f}"
            )
        if int(budget) > 1:
            print("accuracy after each epoch, mean over seeds (diff vs off, points):")
            for name, per_seed in runs.items():
                curves = [per_seed[str(s)]["accuracy_per_epoch"] for s in seeds]
                offs = [off[str(s)]["accuracy_per_epoch"] for s in seeds]
                points: list[str] = []
                for e in range(len(curves[0])):
                    mean = statistics.fmean(c[e] for c in curves)
                    diff = statistics.fmean(c[e] - o[e] for c, o in zip(curves, offs, strict=True))
                    points.append(f"e{e + 1} {mean:.4f} ({100 * diff:+.2f})")
                print(f"  {name:<8}" + "  ".join(points))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--intents", type=int, default=24)
    parser.add_argument("--train-per-intent", type=int, default=40)
    parser.add_argument("--dev-per-intent", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4, help="the full budget (stage1_epochs)")
    parser.add_argument("--short-epochs", type=int, default=1, help="the short budget")
    parser.add_argument("--tiers", type=int, default=3)
    parser.add_argument("--enc-layers", type=int, default=3)
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--teacher-lr", type=float, default=8e-5)
    parser.add_argument("--teacher-cache", type=Path, default=ROOT / "bench/results/teachers")
    parser.add_argument("--data-seed", type=int, default=0, help="intent subset and teacher")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.tiers < 2 or args.short_epochs < 1 or args.epochs <= args.short_epochs:
        raise SystemExit("need --tiers >= 2 and 1 <= --short-epochs < --epochs")
    # what bench.intent_teacher.teacher_model reads from its namespace
    args.teacher, args.seed = "minilm", args.data_seed

    rows = load_utterances(DATA / "banking77" / "train.csv")
    train, dev = subset(
        rows, args.intents, args.train_per_intent, args.dev_per_intent, args.data_seed
    )
    minilm = load_encoder(locate_minilm())
    source = SourceTokenizer(locate_minilm() / "tokenizer.json", max_tokens=128, context_turns=4)
    name = f"banking77-{args.intents}x{args.train_per_intent}-d{args.data_seed}"
    started = time.perf_counter()
    teacher, teacher_s = teacher_model(name, train, args, source)
    labels = teacher.labels
    index = {label: i for i, label in enumerate(labels)}
    gold = [index[r.intent or ""] for r in dev]
    t_metrics = teacher_metrics(teacher, [source.text(r.turns()) for r in dev], gold, labels)
    examples = intent_examples(train, labels, source, teacher)
    profile = tier_profile(examples, args.tiers)
    print(
        f"BANKING77 subset: {args.intents} intents, {len(train)} train / {len(dev)} dev rows; "
        f"student {args.enc_layers} layers; seeds {args.seeds}; teacher fine-tune "
        f"{teacher_s:.0f} s, teacher dev accuracy {t_metrics['accuracy']:.4f}",
        flush=True,
    )
    for tier in profile:
        print(
            f"  tier {tier['tier']}: {tier['rows']} rows, {tier['intents']} intents, teacher doubt "
            f"mean {tier['mean_doubt']:.4f} max {tier['max_doubt']:.4f}",
            flush=True,
        )

    def evaluate(student: Student) -> dict[str, Any]:
        return student_metrics(student, source, dev, labels)

    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "sizes": {"intents": args.intents, "train_rows": len(train), "dev_rows": len(dev)},
        "teacher": {"accuracy": t_metrics["accuracy"], "macro_f1": t_metrics["macro_f1"]},
        "tiers": profile,
        "runs": defaultdict(lambda: defaultdict(dict)),
    }
    init = minilm.teacher_state_dict()
    done: list[int] = []
    for seed in args.seeds:
        start = initial_student(labels, minilm.vocab_size, init, args.enc_layers, seed)
        for variant, budget, tiers, curriculum_epochs in variants(args):
            config = DistillConfig(
                enc_layers=args.enc_layers,
                stage1_epochs=budget,
                seed=seed,
                curriculum_tiers=tiers,
                curriculum_epochs=curriculum_epochs,
            )
            with tempfile.TemporaryDirectory() as tmp:
                run = run_variant(start, config, examples, teacher.hidden_size, evaluate, Path(tmp))
            results["runs"][str(budget)][variant][str(seed)] = run
            print(
                f"seed {seed} epochs {budget} {variant:<6} acc {run['accuracy']:.4f} "
                f"F1 {run['macro_f1']:.4f} per epoch "
                f"{[round(a, 4) for a in run['accuracy_per_epoch']]}"
                f" ({run['steps']} steps, {run['seconds']} s)",
                flush=True,
            )
        done.append(seed)
        print_tables(results, done)
        print(f"\n{time.perf_counter() - started:.0f} s so far", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
