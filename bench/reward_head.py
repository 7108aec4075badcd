"""The reward head on real ratings: Taskmaster-4's rated agent actions (good 1 / bad 0) and
STAR's user satisfaction (one yes/no verdict for every reply of a dialogue), from ../shared/data.

Rated (context, reply) pairs are split by conversation (a stable hash of its id: no dialogue is
on both sides), the training part goes through the real stage 2 (`DecoderStage`: decoder CE +
reward BCE, and KTO under "kto") on a small student whose encoder starts from MiniLM's first
layers, and the held-back part is scored (the data preparation is
`distill_worker.stages.reward_data`, shared with the unit test). Per objective:

* `reward_auc`: AUC of the reward head's score, good vs bad replies (0.5 = chance);
* `logprob_auc`: AUC of the decoder's mean token log-probability of the reply: does the student
  find the replies customers liked more likely than the ones they did not?
* `p_good_mean` / `p_bad_mean`: the mean predicted rating (sigmoid of the reward) of held-back
  good and bad replies.

Objectives (the ablation): "plain" (every rated reply imitated with weight 1, reward head on the
labels), "ratings_weighted" (a reply counts as much as it was liked: bad ones are never
imitated), "kto" (bad ones pushed down against the initial student). "untrained" is the student
before stage 2 (the chance reference).

    OMP_NUM_THREADS=1 .venv/bin/python bench/reward_head.py --data tm4 --train 1500 \
        --heldback 600 --epochs 3 [--objectives plain ratings_weighted kto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.examples import ReplyExample  # noqa: E402
from distill_worker.model.student import Student  # noqa: E402
from distill_worker.stages.decoder_stage import DecoderStage  # noqa: E402
from distill_worker.stages.reward_data import (  # noqa: E402
    build_reply_examples,
    rated_records,
    small_reward_student,
    split_by_conversation,
)
from distill_worker.stages.reward_eval import reply_logprobs, reward_scores, roc_auc  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OBJECTIVES = ("plain", "ratings_weighted", "kto")


def evaluate(student: Student, held: list[ReplyExample], cfg: DistillConfig) -> dict[str, Any]:
    labels = [e.reward_label or 0.0 for e in held]
    kw = {"max_source": cfg.max_source_tokens, "max_reply": cfg.max_reply_tokens}
    scores = reward_scores(student, held, **kw)
    logps = reply_logprobs(student, held, **kw)
    probs = torch.sigmoid(torch.tensor(scores))
    good = torch.tensor([y >= 0.5 for y in labels])
    return {
        "reward_auc": round(roc_auc(scores, labels), 4),
        "logprob_auc": round(roc_auc(logps, labels), 4),
        "p_good_mean": round(float(probs[good].mean()), 4),
        "p_bad_mean": round(float(probs[~good].mean()), 4),
    }


def train_objective(
    objective: str,
    train: list[ReplyExample],
    held: list[ReplyExample],
    sizes: tuple[int, int],
    *,
    epochs: int,
    enc_layers: int = 2,
    encoder_lr: float = 0.0,
    lr: float = 1e-3,
    seq_weight: float = 1.0,
    seed: int = 0,
    max_source: int = 96,
    max_reply: int = 32,
) -> dict[str, Any]:
    """Train stage 2 under one objective and score the held-back pairs."""
    cfg = DistillConfig(
        seed=seed,
        max_source_tokens=max_source,
        max_reply_tokens=max_reply,
        enc_layers=enc_layers,
        stage2_epochs=max(epochs, 1),
        stage2_batch_size=32,
        stage2_lr=lr,
        stage2_encoder_lr=encoder_lr,
        token_kd_weight=0.0,
        seq_kd_weight=seq_weight,
        reward_weight=1.0,
        reward_objective="kto" if objective == "kto" else "ratings_weighted",
        checkpoint_every=10_000,
    )
    student = small_reward_student(*sizes, enc_layers, seed)
    if objective == "untrained":
        return evaluate(student, held, cfg)
    rows = [replace(e, weight=1.0) for e in train] if objective == "plain" else train
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        stage = DecoderStage(student, cfg, rows, Path(work) / "log.jsonl", Path(work) / "ckpt")
        stage.setup()
        stage.train()
        stage.cleanup()
    result = evaluate(student, held, cfg)
    result["train_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["tm4", "star"], nargs="+", default=["tm4", "star"])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--heldback", type=int, default=600)
    parser.add_argument("--heldback-fraction", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--objectives", nargs="+", default=["untrained", *OBJECTIVES])
    parser.add_argument("--encoder-lr", type=float, default=0.0, help="0: encoder frozen")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--enc-layers", type=int, default=2)
    parser.add_argument("--no-steps", action="store_true", help="TM4 without API steps")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name in args.data:
        train_u, held_u = split_by_conversation(
            rated_records(name, args.data_dir),
            args.heldback_fraction,
            args.train,
            args.heldback,
            with_steps=not args.no_steps,
        )
        train, held, enc_vocab, dec_vocab = build_reply_examples(train_u, held_u, 96, 32)
        info = {
            "train": len(train),
            "heldback": len(held),
            "train_good_share": round(sum(e.reward_label or 0 for e in train) / len(train), 3),
            "heldback_good_share": round(sum(e.reward_label or 0 for e in held) / len(held), 3),
        }
        print(name, json.dumps(info), flush=True)
        results[name] = {"data": info}
        for objective in args.objectives:
            metrics = train_objective(
                objective,
                train,
                held,
                (enc_vocab, dec_vocab),
                epochs=args.epochs,
                enc_layers=args.enc_layers,
                encoder_lr=args.encoder_lr,
                lr=args.lr,
            )
            results[name][objective] = metrics
            print(f"  {objective:17s} {json.dumps(metrics)}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
