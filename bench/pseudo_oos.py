"""Which negatives the handoff threshold should be calibrated on, measured as served on rows the
run never saw: a bundle's calibration rows are rebuilt exactly as its run carved them (same
split, same seed), the threshold is fitted on them with each choice of negatives, and each
threshold is applied to the same dev rows in one run:

    floor only        no negatives: the right-answers floor (`fit_handoff_threshold`)
    data oos + ood (words filter)
                      the data's own `oos` rows and the out-of-domain corpus (--ood), less
                      its rows close in words to an in-scope train row (runs until 2026-12-05)
    data oos + ood    the same, less also its rows close in meaning (`ood_negatives`, runs now)
    pseudo-oos        every calibration row scored as if its intent were unknown
                      (`pseudo_oos_confidences`: intents held out in folds, their columns masked)
    all               data oos + ood + pseudo-oos

    .venv/bin/python bench/pseudo_oos.py --bundle B --data data_full.json --split train \\
        --dev data_full.json --dev-split val [--ood ood.jsonl] [--unlabelled unl.jsonl] \
        [--precision int8]

`--data`, `--split`, `--seed`, `--dev-fraction`, `--ood`, `--unlabelled` must be the run's (its
`--data` and defaults; `--ood` the data folder's ood_corpus.jsonl where the run used that);
`--dev`: rows the run did not train on, with `oos` rows where out-of-scope recall is wanted.

`--score energy|max-softmax` ranks messages by that score (`bundle_runtime.handoff_score`)
instead of the bundle's own: energy is the logsumexp of the (temperature-scaled) logits of the
in-scope intents, the `oos` column left out, higher meaning more in scope; pseudo-out-of-scope
rows get the same with their fold's intents masked. The thresholds are then in that score's
units. This measures whether the other score would serve better, with the same calibration
rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundle_runtime.handoff_score import HANDOFF_SCORES, intent_scores  # noqa: E402
from bundle_runtime.intents import OOS, as_served, scores  # noqa: E402
from bundle_runtime.onnx_student import OnnxStudent  # noqa: E402
from bundle_runtime.source import format_source  # noqa: E402
from distill_worker.data.building import stratified_split  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.data.ood_corpus import drop_near  # noqa: E402
from distill_worker.data.run_corpora import (  # noqa: E402
    ood_negatives,
    ood_sample,
    unlabelled_messages,
)
from distill_worker.run_config import AUTO  # noqa: E402
from distill_worker.stages.calibrate import (  # noqa: E402
    calibrate_logits,
    fit_handoff_threshold,
    pseudo_oos_confidences,
)


def logits_of(student: OnnxStudent, rows: list[Utterance]) -> torch.Tensor:
    turns = student.manifest.context_turns
    chunks = []
    for i in range(0, len(rows), 64):
        ids, mask = student.encode_texts(
            [format_source(r.turns(), turns) for r in rows[i : i + 64]]
        )
        chunks.append(torch.from_numpy(student.intent_logits(ids, mask).astype(np.float32)))
    return torch.cat(chunks) if chunks else torch.zeros(0, len(student.manifest.intent_labels))


def confidences(logits: torch.Tensor, oos: int | None, score: str) -> tuple[list[int], list[float]]:
    """The predicted intents and each row's handoff score (-inf where `oos` is predicted)."""
    pred, _, values = intent_scores(logits.double().numpy(), score, oos)
    return pred, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="The run's --data.")
    parser.add_argument("--split", default="train")
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--dev-split", default="val")
    parser.add_argument("--ood", type=Path, default=None, help="The run's --ood corpus.")
    parser.add_argument(
        "--unlabelled",
        type=Path,
        default=None,
        help="The run's --unlabelled file: its KD rows are not negatives either.",
    )
    parser.add_argument(
        "--dev-oos",
        type=Path,
        default=None,
        help="Messages the bot should hand off (any --data format, labels ignored), scored as "
        "out-of-scope dev rows: for data without its own (e.g. CLINC150's oos_test beside "
        "BANKING77).",
    )
    parser.add_argument("--dev-oos-split", default="oos_val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="int8")
    parser.add_argument(
        "--score",
        choices=HANDOFF_SCORES,
        default=None,
        help="The handoff score (`bundle_runtime.handoff_score`); default: the bundle's own.",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    student = OnnxStudent(args.bundle, precision=args.precision)
    args.score = args.score or student.handoff_score
    labels = list(student.manifest.intent_labels)
    index = {label: i for i, label in enumerate(labels)}
    oos = index.get(OOS)
    train, heldout = stratified_split(
        load_utterances(args.data, split=args.split), args.dev_fraction, args.seed
    )
    _, calibration = stratified_split(heldout, 0.5, args.seed + 1)
    calibration = [r for r in calibration if r.intent in index]
    corpus = str(args.ood) if args.ood else None
    unlabelled = str(args.unlabelled) if args.unlabelled else None
    kd_rows = unlabelled_messages(unlabelled, train, heldout, args.seed, print)
    ood, _ = ood_negatives(corpus, train, calibration, args.seed, print, other=[*heldout, *kd_rows])
    # The same rows filtered as runs did before the embedding filter: by their words alone.
    in_scope_train = [r for r in train if r.intent != OOS]
    sample = ood_sample(str(args.ood), args.seed)[0] if args.ood else []
    ood_words = drop_near(sample, in_scope_train)
    dev = [r for r in load_utterances(args.dev, split=args.dev_split) if r.intent]
    if args.dev_oos is not None:
        extra = load_utterances(args.dev_oos, split=args.dev_oos_split)
        dev += [replace(r, intent=OOS) for r in extra]

    cal_logits = logits_of(student, calibration)
    gold = [index[r.intent or ""] for r in calibration]
    pred, conf = confidences(cal_logits, oos, args.score)
    in_scope = [(c, p == g) for c, p, g in zip(conf, pred, gold, strict=True) if g != oos]
    data_oos = [c for c, g in zip(conf, gold, strict=True) if g == oos]
    ood_logits = logits_of(student, ood)
    ood_conf = confidences(ood_logits, oos, args.score)[1] if ood else []
    words_conf = confidences(logits_of(student, ood_words), oos, args.score)[1] if ood_words else []
    pseudo = pseudo_oos_confidences(cal_logits, gold, oos=oos, seed=args.seed, score=args.score)
    choices = {
        "floor only": [],
        "data oos + ood (words filter)": data_oos + words_conf,
        "data oos + ood": data_oos + ood_conf,
        "pseudo-oos": pseudo,
        "all": data_oos + ood_conf + pseudo,
    }
    dev_pred, dev_conf = confidences(logits_of(student, dev), oos, args.score)
    dev_gold = [r.intent or "" for r in dev]
    predicted = [labels[p] for p in dev_pred]
    results: list[dict[str, Any]] = []
    for name, negatives in choices.items():
        fit = fit_handoff_threshold(in_scope, negatives, score=args.score)
        served, handoff = as_served(
            predicted,
            dev_conf,
            dev_gold,
            threshold=fit.threshold,
            oos=OOS if oos is not None else None,
            counts_as_oos=OOS if OOS in dev_gold else None,
        )
        results.append(
            {"negatives": name, "calibration": fit.as_dict(), "handoff": handoff}
            | scores(served, dev_gold)
        )
    print(
        f"bundle {student.model_version} ({args.precision}, {args.score}); calibration rows "
        f"{len(in_scope)} in scope, {len(data_oos)} oos, {len(ood_conf)} out-of-domain, "
        f"{len(pseudo)} pseudo-oos; dev {len(dev)} rows of {args.dev}"
    )
    print(
        "| negatives | threshold | dev accuracy | in-scope acc. | OOS recall | handed off | "
        "answered acc. |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        cells = [
            r["negatives"],
            f"{r['calibration']['threshold']:.3f}",
            f"{r['accuracy']:.4f}",
            "" if r.get("in_scope_accuracy") is None else f"{r['in_scope_accuracy']:.4f}",
            "" if r.get("oos_recall") is None else f"{r['oos_recall']:.3f}",
            f"{r['handoff']['share']:.3f}",
            f"{r['handoff']['answered_accuracy']:.4f}",
        ]
        print("| " + " | ".join(cells) + " |")
    # What a run calibrating on these rows would serve (`--handoff-score auto`, the default).
    in_rows = [i for i, g in enumerate(gold) if g != oos]
    negatives_all = torch.cat([cal_logits[[i for i, g in enumerate(gold) if g == oos]], ood_logits])
    auto = calibrate_logits(
        cal_logits[in_rows],
        [gold[i] for i in in_rows],
        negatives_all if negatives_all.shape[0] else None,
        oos=oos,
        score=AUTO,
        seed=args.seed,
    )
    print(
        f"auto: {auto.score} at {auto.threshold:.3f}; AUROC of in-scope against negative "
        "calibration rows: "
        + ", ".join(f"{name} {value:.3f}" for name, value in (auto.separation or {}).items())
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
