"""Does training with adversarial variants change intent accuracy and out-of-scope recall?

A cheap sanity signal for `distill_worker.data.augment`, not a claim about the student: a TF-IDF
(word 1-2 grams + character 2-5 grams) + logistic regression classifier on CLINC150
(../shared/data/clinc150/data_full.json; train + oos_train, 15,100 rows) is trained four ways,
side by side in one run, and scored on val + oos_val (3,100 rows):

    none          the train rows only
    noise only    + variants with `oos_label=None`: typo / casing / punctuation / paraphrase
                  copies, the oos rows treated like any intent (no made-up out-of-scope input)
    no garbage    + variants as the pipeline makes them less the made-up out-of-scope kinds
                  (keyboard mash, symbols): noise + noisy copies of the oos rows
    all kinds     + variants as the pipeline makes them: a fifth of the budget out-of-scope

Scored on three sets: clean val; "noisy val", each val row changed by one intent-keeping kind
drawn with another seed (the same generator as training, so an upper bound on what the noise
teaches); and "garbage", 300 made-up keyboard mash / symbols inputs (also from the same
generator), where the figure is the share sent to `oos`. Reports accuracy, in-scope accuracy,
OOS recall and precision, averaged over --seeds variant seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/augment_variants.py [--fraction 0.05] [--seeds 0]
    [--max-train N] [--json bench/results/augment_variants.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill_worker.data.augment import (  # noqa: E402
    NOISE_KINDS,
    adversarial_variants,
    adversarial_variants_by_kind,
    variant,
)
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402

OOS = "oos"
GARBAGE = ("keyboard_mash", "symbols")  # the made-up out-of-scope kinds
SETUPS = ("none", "noise_only", "no_garbage", "all_kinds")
CLINC = ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json"


def scores(pred: list[str], gold: list[str]) -> dict[str, float | None]:
    """Accuracy, in-scope accuracy, OOS recall and precision over parallel label lists."""
    pairs = list(zip(pred, gold, strict=True))
    in_scope = [p == g for p, g in pairs if g != OOS]
    hits = sum(p == OOS and g == OOS for p, g in pairs)
    n_gold, n_pred = gold.count(OOS), pred.count(OOS)
    return {
        "accuracy": sum(p == g for p, g in pairs) / len(pairs),
        "in_scope_accuracy": sum(in_scope) / len(in_scope) if in_scope else None,
        "oos_recall": hits / n_gold if n_gold else None,
        "oos_precision": hits / n_pred if n_pred else None,
    }


def fit_and_score(
    train: list[Utterance], evals: dict[str, list[Utterance]]
) -> dict[str, dict[str, float | None]]:
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(C=10.0, max_iter=1000),
    )
    model.fit([r.text for r in train], [r.intent for r in train])
    out = {}
    for name, rows in evals.items():
        pred = [str(p) for p in model.predict([r.text for r in rows])]
        out[name] = scores(pred, [r.intent or "" for r in rows])
    return out


def noisy(rows: list[Utterance], seed: int) -> list[Utterance]:
    """Each row changed by one intent-keeping kind; a row no kind changes is kept as it is."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        text = variant(row.text, rng.choice(NOISE_KINDS), rng)
        out.append(Utterance(text if text.strip() else row.text, intent=row.intent))
    return out


def garbage(n: int, seed: int) -> list[Utterance]:
    rng = random.Random(seed)
    return [Utterance(variant("", GARBAGE[i % 2], rng), intent=OOS) for i in range(n)]


def extra_rows(setup: str, train: list[Utterance], fraction: float, seed: int) -> list[Utterance]:
    """The variants one setup adds to `train` (see the module docstring)."""
    if setup == "none":
        return []
    if setup == "noise_only":
        return adversarial_variants(train, fraction, seed, oos_label=None)
    by_kind = adversarial_variants_by_kind(train, fraction, seed, made_up_share=0.25)
    drop = GARBAGE if setup == "no_garbage" else ()
    return [row for kind, rows in by_kind.items() if kind not in drop for row in rows]


def mean(runs: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name in runs[0]:
        out[name] = {}
        for key in runs[0][name]:
            values = [v for r in runs if (v := r[name][key]) is not None]
            out[name][key] = round(statistics.mean(values), 4) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=CLINC)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-train", type=int, default=None, help="first N train rows only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    train = load_utterances(args.data, split="train")
    if args.max_train:
        train = random.Random(0).sample(train, min(args.max_train, len(train)))
    val = load_utterances(args.data, split="val")
    evals = {"val": val, "noisy_val": noisy(val, 1000), "garbage": garbage(300, 1000)}
    print(f"{len(train)} train rows, {len(val)} val rows, fraction {args.fraction}", flush=True)

    result: dict[str, object] = {"train_rows": len(train), "fraction": args.fraction}
    for name in SETUPS:
        runs, added = [], 0
        started = time.perf_counter()
        for seed in args.seeds if name != "none" else args.seeds[:1]:
            extra = extra_rows(name, train, args.fraction, seed)
            added = len(extra)
            runs.append(fit_and_score([*train, *extra], evals))
        result[name] = {"variants": added, **mean(runs)}
        print(
            f"{name:10s} +{added:4d} rows  {time.perf_counter() - started:5.0f} s  "
            + json.dumps(result[name]),
            flush=True,
        )
    keys = ("accuracy", "in_scope_accuracy", "oos_recall", "oos_precision")
    print("\nset        setup       accuracy  in-scope  OOS recall  OOS precision")
    for split in evals:
        for name in SETUPS:
            m = result[name][split]  # type: ignore[index]
            cells = ["  -  " if m[k] is None else f"{m[k]:.3f}" for k in keys]
            print(f"{split:10s} {name:10s}  " + "     ".join(cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
