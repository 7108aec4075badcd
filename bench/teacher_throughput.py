"""Teacher labelling throughput: the vLLM server at several client concurrency levels vs the
in-process teacher, on the same BANKING77 prompts, side by side.

    .venv/bin/python bench/teacher_throughput.py --vllm-url http://127.0.0.1:8000 \\
        --model smollm2 --responder-dir <prepared SmolLM2 folder> \\
        [--prompts 16] [--concurrency 1,2,4,8] [--json bench/results/teacher_throughput.json]

Labelling is what a run does per prompt: a greedy reply (max 48 new tokens), then the reply
scored teacher-forced with the top-20 logprobs (`label_replies`, through a fresh teacher cache
so every prompt is a miss). For vLLM it also times `generate_scored`, which gets the reply and
its logprobs in one request. Start the server separately (see README: teacher via vLLM).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill_worker.data.building import sample_prompts, teacher_messages  # noqa: E402
from distill_worker.data.labelling import label_replies  # noqa: E402
from distill_worker.data.loaders import load_utterances  # noqa: E402
from distill_worker.teacher.base import Responder  # noqa: E402
from distill_worker.teacher.cache import TeacherCache  # noqa: E402
from distill_worker.teacher.local import LocalResponder  # noqa: E402
from distill_worker.teacher.openai_compat import OpenAIResponder  # noqa: E402

BANKING77 = ROOT / ".." / "shared" / "data" / "banking77" / "train.csv"
MAX_NEW_TOKENS, TOP_K = 48, 20


def _label(responder: Responder, prompts: list[Any], chunk: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = TeacherCache.in_sqlite_file(Path(tmp) / "cache.db")
        started = time.monotonic()
        replies, stats = label_replies(
            responder,
            prompts,
            None,
            cache,
            max_new_tokens=MAX_NEW_TOKENS,
            top_k=TOP_K,
            chunk=chunk,
        )
        seconds = time.monotonic() - started
        cache.close()
    assert stats.misses == len(prompts)
    tokens = sum(len(r.token_ids) for r in replies)
    return {
        "seconds": round(seconds, 2),
        "prompts_per_s": round(len(prompts) / seconds, 3),
        "reply_tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vllm-url", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--responder-dir", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    prompts = sample_prompts(load_utterances(BANKING77), args.prompts, seed=0)
    results: dict[str, Any] = {"prompts": len(prompts), "max_new_tokens": MAX_NEW_TOKENS}
    for level in [int(c) for c in args.concurrency.split(",")]:
        with OpenAIResponder(
            args.vllm_url,
            args.model,
            max_concurrency=level,
            timeout_s=600,
            chat_template_tokenizer_dir=args.responder_dir,
        ) as remote:
            label = _label(remote, prompts, chunk=max(level, 8))
            chats = [teacher_messages(None, p.turns()) for p in prompts]
            started = time.monotonic()
            remote.generate_scored(
                chats, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, seed=0, top_k=TOP_K
            )
            one = time.monotonic() - started
        results[f"vllm_c{level}"] = {
            **label,
            "generate_scored_prompts_per_s": round(len(prompts) / one, 3),
        }
        print(level, results[f"vllm_c{level}"], flush=True)
    local = LocalResponder(args.responder_dir)
    results["in_process"] = _label(local, prompts, chunk=8)
    print("in process", results["in_process"], flush=True)
    base = results["in_process"]["prompts_per_s"]
    for value in results.values():
        if isinstance(value, dict):
            value["vs_in_process"] = round(value["prompts_per_s"] / base, 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
