"""Best-of-n teacher replies on Bitext: does the champion's reward head pick better replies than
the teacher's greedy one, and does a student trained on its picks reply better?

1. Champion: a full run (tiny student) on `--intents` Bitext intents x `--per-intent` rows with
   the data's reference replies (they train the decoder and, as positives, the reward head).
2. Selection: for `--prompts` held-back Bitext prompts (rows the champion never saw, spread over
   the intents), the responder writes its greedy reply and n - 1 sampled ones (`--n`,
   `--temperature`), exactly as a best-of-n run asks it (`best_of_n.teacher_variants`). Every
   candidate gets the champion's reward score and its chrF against the row's reference reply.
   Printed side by side: mean chrF of the greedy reply, of a random variant (the mean over
   variants), of the reward head's pick, of its lowest-scored variant, and of the best variant
   by chrF (the oracle); how often the pick is the greedy reply; and how often, over pairs of
   variants of one prompt, the higher reward also has the higher chrF (0.5 = no signal).
3. With `--student`: two incremental runs from the champion on the same data, greedy teacher
   replies vs best-of-n; the bundles' held-back reply chrF against the references (ONNX
   Runtime, `loop.bundle_eval`), wall time and teacher calls.

`--margins`: the pick replaces the greedy reply only when its reward beats the greedy one's by
more than the margin (0: plain best-of-n); the chrF of each rule is printed. Several
`--temperature` values reuse one champion.

    OMP_NUM_THREADS=1 .venv/bin/python bench/best_of_n.py --intents 8 --per-intent 24 \\
        --prompts 24 --n 4 [--student] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tokenizers import Tokenizer  # noqa: E402

from distill_worker.config import DistillConfig  # noqa: E402
from distill_worker.data.best_of_n import (  # noqa: E402
    RewardScorer,
    best_index,
    judge,
    teacher_variants,
)
from distill_worker.data.building import SourceTokenizer, teacher_messages  # noqa: E402
from distill_worker.data.loaders import Utterance, load_utterances  # noqa: E402
from distill_worker.loop.bundle_eval import evaluate_bundle  # noqa: E402
from distill_worker.pipeline import DistillRequest, DistillResult, run_distillation  # noqa: E402
from distill_worker.run_config import RunConfig  # noqa: E402
from distill_worker.stages.evaluate import chrf  # noqa: E402
from distill_worker.stages.warm_start import load_champion  # noqa: E402
from distill_worker.teacher.cache import TeacherCache  # noqa: E402
from distill_worker.teacher.encoder import locate_minilm  # noqa: E402
from distill_worker.teacher.local import LocalResponder  # noqa: E402
from distill_worker.teacher.prepare import prepare_responder  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
TINY = DistillConfig(
    enc_layers=2,
    dec_layers=1,
    dec_hidden=64,
    dec_heads=2,
    dec_ffn=128,
    stage1_epochs=3,
    stage2_epochs=3,
    stage1_batch_size=16,
    stage2_batch_size=8,
    max_reply_tokens=48,
)


def bitext_rows(
    n_intents: int, per_intent: int, per_intent_heldback: int, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """(train rows, held-back prompts) of the first `n_intents` Bitext intents (shuffled)."""
    rows = load_utterances(DATA / "bitext_cs" / "bitext_cs.csv")
    by_intent: dict[str, list[Utterance]] = {}
    for row in rows:
        if row.intent and row.reply:
            by_intent.setdefault(row.intent, []).append(row)
    rng = random.Random(seed)
    train, held = [], []
    for intent in sorted(by_intent)[:n_intents]:
        group = by_intent[intent]
        rng.shuffle(group)
        train += group[:per_intent]
        held += group[per_intent : per_intent + per_intent_heldback]
    return train, held


def write_csv(path: Path, rows: list[Utterance]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["text", "intent", "reply"])
        out.writerows([r.text, r.intent, r.reply] for r in rows)
    return path


def run(
    work: Path, name: str, responder_dir: Path, data: Path, config: DistillConfig, args: Any,
    warm: Path | None = None,
) -> tuple[DistillResult, float]:  # fmt: skip
    cache = TeacherCache.in_sqlite_file(work / f"cache_{name}.db")
    started = time.monotonic()
    try:
        result = run_distillation(
            DistillRequest(
                out_dir=work / f"bundle_{name}",
                work_dir=work / f"run_{name}",
                responder_dir=responder_dir,
                config=RunConfig(
                    distill=config,
                    reply_budget=args.reply_budget,
                    eval_replies=4,
                    teacher_epochs=2,
                    dev_fraction=0.15,
                    int8=False,
                ),
                data_path=data,
                teacher_cache=cache,
                warm_start_bundle=warm,
            ),
            log=lambda line: (
                print(f"  [{name}] {line.strip()}", flush=True) if args.verbose else None
            ),
        )
    finally:
        cache.close()
    return result, time.monotonic() - started


def selection(
    champion_dir: Path,
    responder_dir: Path,
    held: list[Utterance],
    work: Path,
    args: Any,
    temperature: float,
) -> dict[str, Any]:
    """Part 2: the reward head's pick among teacher variants vs the references."""
    responder = LocalResponder(responder_dir)
    decoder = Tokenizer.from_file(str(responder_dir / "tokenizer.json"))
    source = SourceTokenizer(
        locate_minilm() / "tokenizer.json",
        max_tokens=TINY.max_source_tokens,
        context_turns=4,
    )
    scorer = RewardScorer(
        load_champion(champion_dir),
        source,
        lambda text: list(decoder.encode(text, add_special_tokens=False).ids),
        max_source=TINY.max_source_tokens,
        max_reply=TINY.max_reply_tokens,
    )
    cache = TeacherCache.in_sqlite_file(work / "cache_selection.db")
    started = time.monotonic()
    try:
        variants, _ = teacher_variants(
            responder,
            [teacher_messages(None, p.turns()) for p in held],
            cache,
            n=args.n,
            temperature=temperature,
            max_new_tokens=TINY.max_reply_tokens,
        )
    finally:
        cache.close()
    teacher_seconds = time.monotonic() - started
    rewards, outside, total = judge(scorer, held, variants)
    columns: dict[str, list[float]] = {
        k: [] for k in ("greedy", "random", "reward_pick", "reward_worst", "oracle")
    }
    agree = pairs = picked_greedy = 0
    by_margin: dict[float, list[float]] = {m: [] for m in args.margins}
    rows = []
    for prompt, texts, scores in zip(held, variants, rewards, strict=True):
        if not texts:
            continue
        assert prompt.reply is not None
        quality = [chrf(text, prompt.reply) for text in texts]
        rows.append({"rewards": [round(x, 4) for x in scores], "chrf": quality})
        top = best_index(scores)
        for margin, picked in by_margin.items():
            picked.append(quality[top] if scores[top] - scores[0] > margin else quality[0])
        columns["greedy"].append(quality[0])
        columns["random"].append(statistics.fmean(quality))
        columns["reward_pick"].append(quality[best_index(scores)])
        columns["reward_worst"].append(quality[min(range(len(scores)), key=scores.__getitem__)])
        columns["oracle"].append(max(quality))
        picked_greedy += best_index(scores) == 0
        for a, b in itertools.combinations(range(len(texts)), 2):
            if scores[a] != scores[b] and quality[a] != quality[b]:
                pairs += 1
                agree += (scores[a] > scores[b]) == (quality[a] > quality[b])
    return {
        "prompts": len(columns["greedy"]),
        "mean_variants": round(sum(map(len, variants)) / max(len(variants), 1), 2),
        "temperature": temperature,
        "chrf": {k: round(statistics.fmean(v), 2) for k, v in columns.items() if v},
        "chrf_by_margin": {
            str(m): round(statistics.fmean(v), 2) for m, v in by_margin.items() if v
        },
        "pick_is_greedy": picked_greedy,
        "pairwise_agreement": round(agree / pairs, 3) if pairs else None,
        "pairs": pairs,
        "tokens_outside_champion_vocab": f"{outside}/{total}",
        "teacher_seconds": round(teacher_seconds, 1),
        "per_prompt": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intents", type=int, default=8)
    parser.add_argument("--per-intent", type=int, default=24)
    parser.add_argument("--prompts", type=int, default=24, help="held-back prompts in all")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.8])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--reply-budget", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--champion-stage2-epochs",
        type=int,
        default=TINY.stage2_epochs,
        help="a longer stage 2 gives the champion a better-trained reward head",
    )
    parser.add_argument("--student", action="store_true", help="also train on the picks")
    parser.add_argument("--responder-dir", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    responder_dir = prepare_responder(
        args.responder_dir or Path(tempfile.gettempdir()) / "chatdistill-test-smollm2"
    )
    per_held = max(1, args.prompts // args.intents)
    train, held = bitext_rows(args.intents, args.per_intent, per_held, args.seed)
    print(f"Bitext: {len(train)} train rows, {len(held)} held-back prompts, {args.intents} intents")
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="bench-best-of-n-") as tmp:
        work = Path(tmp)
        data = write_csv(work / "train.csv", train)
        champion_cfg = replace(TINY, stage2_epochs=args.champion_stage2_epochs)
        champion, seconds = run(work, "champion", responder_dir, data, champion_cfg, args)
        results["champion"] = {"wall_seconds": round(seconds, 1)}
        print(f"champion trained in {seconds:.0f} s", flush=True)
        results["selection"] = []
        for temperature in args.temperature:
            picked = selection(champion.bundle_dir, responder_dir, held, work, args, temperature)
            results["selection"].append(picked)
            print(json.dumps({k: v for k, v in picked.items() if k != "per_prompt"}), flush=True)
        if args.student:
            for name, n in (("greedy", 1), (f"best_of_{args.n}", args.n)):
                cfg = replace(TINY, best_of_n=n, variant_temperature=args.temperature[0])
                result, seconds = run(
                    work, name, responder_dir, data, cfg, args, warm=champion.bundle_dir
                )
                quality = evaluate_bundle(result.bundle_dir, held, max_replies=len(held))
                results[name] = {
                    "wall_seconds": round(seconds, 1),
                    "teacher_cache": result.metrics["teacher_cache"],
                    "best_of_n": result.metrics["best_of_n"],
                    "heldback_reply_chrf": quality.get("reply_chrf"),
                    "heldback_intent_accuracy": quality.get("intent_accuracy"),
                }
                print(name, json.dumps(results[name]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
