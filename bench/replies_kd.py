"""Replies with and without token-level KD, side by side: the same teacher replies, the same
stage 1, the same stage-2 budget; only `token_kd_weight` differs (0 = sequence-level KD only).

    .venv/bin/python bench/replies_kd.py --from-run data/runs/<a quickstart run> \\
        [--stage2-epochs 60] [--eval-replies 24] [--json bench/results/replies_kd.json]

Reuses the run's fine-tuned encoder teacher and, through the store's teacher cache, its teacher
replies (no new teacher replies for training, given the run's --reply-budget); reports chrF and
ROUGE-L of the student's replies against the responder's on held-back prompts, and the stage-2
loss.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill_worker.pipeline import DistillRequest, run_distillation  # noqa: E402
from distill_worker.run_config import RunConfig  # noqa: E402
from distill_worker.teacher.cache import TeacherCache  # noqa: E402
from distill_worker.teacher.prepare import prepared_responder_dir  # noqa: E402
from feedback.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-run", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--stage2-epochs", type=int, default=60)
    parser.add_argument("--eval-replies", type=int, default=24)
    parser.add_argument("--reply-budget", type=int, default=64, help="the run's (quickstart: 64)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    stored = json.loads((args.from_run / "config.json").read_text())
    # A run's config.json: its RunConfig (older runs: the DistillConfig alone).
    base = RunConfig.from_row(stored if "distill" in stored else {"distill": stored})
    # The run's teacher replies are in the store's teacher cache (the embedded SQLite file under
    # --data-dir for a quickstart run): asking for the same prompts again hits it.
    cache = TeacherCache.in_store(Settings(data_dir=args.data_dir))
    results = {}
    for weight in (0.0, 0.5):
        config = base.with_changes(
            distill={"token_kd_weight": weight, "stage2_epochs": args.stage2_epochs},
            reply_budget=args.reply_budget,
            eval_replies=args.eval_replies,
            int8=False,
        )
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "run"
            work.mkdir()
            shutil.copytree(args.from_run / "encoder_teacher", work / "encoder_teacher")
            result = run_distillation(
                DistillRequest(
                    out_dir=Path(tmp) / "bundle",
                    work_dir=work,
                    responder_dir=prepared_responder_dir(args.data_dir),
                    config=config,
                    teacher_cache=cache,
                ),
                log=lambda line: print(line, flush=True),
            )
        m = result.metrics
        results[f"token_kd_weight={weight}"] = {
            "chrf_vs_teacher": m["replies"]["chrf_vs_teacher"],
            "rouge_l_vs_teacher": m["replies"]["rouge_l_vs_teacher"],
            "stage2_last": m["stage2"].get("last"),
            "intent_accuracy": m["intent"]["accuracy"],
            "examples": m["replies"]["examples"][:3],
        }
    cache.close()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
