"""One bundle, three runtimes side by side: torch eager vs ONNX Runtime FP32 vs INT8.

    .venv/bin/python bench/export_runtime.py BUNDLE_DIR [--texts FILE] [--requests 64]
        [--threads 1] [--json OUT.json]

For batch 1 and batch 16: latency per request (a request waits for its whole batch; median and
p95 over batches), replies per second, and agreement with ONNX Runtime FP32 (intent, reply text).
Torch eager is `Student.generate` on the bundle's safetensors weights plus tokenization; the
ONNX Runtime rows time the full serving path (`OnnxStudent.reply_batch`: tokenize, encoder,
greedy decode, reward, detokenize), so they do a little more work than the torch row.
The machine is shared and noisy: compare ratios within one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bundle_runtime.manifest import verify_bundle
from bundle_runtime.onnx_student import OnnxStudent
from bundle_runtime.source import format_source
from distill_worker.model.student import Student, StudentConfig

DEFAULT_TEXTS = [
    "Where is my order?",
    "I want a refund for my last purchase",
    "My parcel arrived damaged, what can I do?",
    "How do I change my delivery address?",
    "Can I cancel my subscription?",
    "The discount code does not work",
    "When will my package arrive?",
    "I was charged twice for the same order",
    "Do you ship to Canada?",
    "How can I reset my password?",
    "What is your return policy?",
    "Tell me a joke",
]
BATCHES = (1, 16)
Reply = tuple[list[str], list[str]]  # (intents, reply texts) of one batch


class TorchEager:
    """`Student.generate` on the bundle's weights, with the bundle's tokenizers."""

    def __init__(self, bundle: Path, tokenizer_side: OnnxStudent) -> None:
        self.manifest = tokenizer_side.manifest
        self.student = Student(StudentConfig.from_dict(self.manifest.student_config))
        self.student.load_state_dict(load_file(str(bundle / "student.safetensors")))
        self.student.eval()
        self.encode = tokenizer_side.encode_texts
        self.decoder_tokenizer = Tokenizer.from_file(str(bundle / "decoder_tokenizer.json"))

    def __call__(self, sources: list[str]) -> Reply:
        ids, mask = (torch.from_numpy(a) for a in self.encode(sources))
        with torch.no_grad():
            tokens = self.student.generate(ids, mask, self.manifest.max_new_tokens)
        vocab = self.manifest.decoder_vocab
        if vocab:  # student ids -> tokenizer ids
            tokens = [[vocab[t] for t in row] for row in tokens]
        texts = self.decoder_tokenizer.decode_batch(tokens, skip_special_tokens=True)
        return [], [t.strip() for t in texts]

    def intents(self, sources: list[str]) -> list[str]:
        """Untimed, for the agreement column only."""
        ids, mask = (torch.from_numpy(a) for a in self.encode(sources))
        with torch.no_grad():
            _, _, logits = self.student.encode(ids, mask)
        return [self.manifest.intent_labels[int(i)] for i in logits.argmax(dim=-1)]


def onnx_runtime(student: OnnxStudent) -> Callable[[list[str]], Reply]:
    def run(sources: list[str]) -> Reply:
        replies = student.reply_batch([[("customer", s)] for s in sources])
        return [r.intent for r in replies], [r.text for r in replies]

    return run


def measure(run: Callable[[list[str]], Reply], texts: list[str], batch: int) -> dict[str, Any]:
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    for chunk in chunks[:2]:  # warm up
        run(chunk)
    times, intents, replies = [], [], []
    for chunk in chunks:
        start = time.perf_counter()
        chunk_intents, chunk_replies = run(chunk)
        times.append((time.perf_counter() - start) * 1000.0)
        intents += chunk_intents
        replies += chunk_replies
    return {
        "batch": batch,
        "median_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "replies_per_s": len(texts) / (sum(times) / 1000.0),
        "intents": intents,
        "replies": replies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--texts", type=Path, help="customer messages, one per line")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    manifest = verify_bundle(args.bundle)
    lines = args.texts.read_text().splitlines() if args.texts else DEFAULT_TEXTS
    lines = [line for line in lines if line.strip()]
    texts = [lines[i % len(lines)] for i in range(args.requests)]
    torch.set_num_threads(args.threads)
    threads = {"intra_op_threads": args.threads, "inter_op_threads": 1}
    fp32 = OnnxStudent(args.bundle, precision="fp32", **threads)
    eager = TorchEager(args.bundle, fp32)
    runtimes: dict[str, Callable[[list[str]], Reply]] = {
        "torch eager": eager,
        "onnxruntime fp32": onnx_runtime(fp32),
    }
    if manifest.graphs.get("int8"):
        int8 = OnnxStudent(args.bundle, precision="int8", **threads)
        runtimes["onnxruntime int8"] = onnx_runtime(int8)

    results: list[dict[str, Any]] = []
    reference: dict[int, dict[str, Any]] = {}
    for name, run in runtimes.items():
        for batch in BATCHES:
            # OnnxStudent.reply_batch formats the source itself; torch gets it preformatted.
            inputs = texts if run is not eager else [
                format_source([("customer", t)], manifest.context_turns) for t in texts
            ]  # fmt: skip
            row = measure(run, inputs, batch)
            if run is eager:
                row["intents"] = eager.intents(inputs)
            row["runtime"] = name
            if name == "onnxruntime fp32":
                reference[batch] = row
            results.append(row)
    for row in results:
        ref = reference[row["batch"]]
        row["intent_agreement"] = float(np.mean(np.array(row["intents"]) == ref["intents"]))
        row["reply_agreement"] = float(np.mean(np.array(row["replies"]) == ref["replies"]))
        torch_row = next(r for r in results if r["runtime"] == "torch eager" and
                         r["batch"] == row["batch"])  # fmt: skip
        row["speedup_vs_torch"] = torch_row["median_ms"] / row["median_ms"]

    print(f"bundle {manifest.model_version} ({args.bundle}), {args.requests} requests, "
          f"{args.threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}")  # fmt: skip
    header = f"{'runtime':<18}{'batch':>6}{'median ms':>11}{'p95 ms':>9}{'replies/s':>11}"
    print(header + f"{'x torch':>9}{'intent=fp32':>13}{'reply=fp32':>12}")
    for row in sorted(results, key=lambda r: (r["batch"], r["runtime"])):
        print(
            f"{row['runtime']:<18}{row['batch']:>6}{row['median_ms']:>11.2f}{row['p95_ms']:>9.2f}"
            f"{row['replies_per_s']:>11.1f}{row['speedup_vs_torch']:>9.2f}"
            f"{row['intent_agreement']:>13.2f}{row['reply_agreement']:>12.2f}"
        )
    if args.json:
        summary = [{k: v for k, v in r.items() if k not in ("intents", "replies")} for r in results]
        meta = {"bundle": str(args.bundle), "model_version": manifest.model_version,
                "requests": args.requests, "threads": args.threads,
                "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "results": summary}, indent=2))


if __name__ == "__main__":
    main()
