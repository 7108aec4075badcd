"""In-process figures for `bench/serving.py`: the decode step time per batch size against the
physical bound of this CPU, the torch eager reference, and a synthetic bundle of the production
student's size (random weights: for timing only, its replies are noise).

Physical bound of one decode step (batch B, past length L, source length S, decoder layers N,
decoder hidden D): every weight of the step graph is read once per step, and the self and cross
K/V caches (4 bytes each) are read once: bytes = weights + N * 2 * B * (L + S) * D * 4. The bound
is bytes / memory bandwidth, the bandwidth measured here with a large numpy copy.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bundle_runtime.onnx_student import OnnxStudent, Precision
from bundle_runtime.running_batch import RunningBatch

PROMPTS = [
    "where is my order", "i want a refund for my last purchase", "how do i reset my password",
    "my parcel arrived damaged what can i do", "can i change the delivery address",
    "do you ship to canada", "the app keeps crashing when i pay", "cancel my subscription please",
    "what is your return policy", "i was charged twice this month", "how long does delivery take",
    "can i speak to a human", "is there a discount for students", "my coupon code does not work",
    "where can i find my invoice", "tell me a joke",
]  # fmt: skip


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth (read + write bytes per second) of a large array, best of `repeats`."""
    src = np.ones(megabytes * 1024 * 1024 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weights_read_per_step(graph: Path) -> int:
    """Bytes of the initializers a step reads in full: all but tables only gathered from (the
    input embedding: a step reads B rows of it, not the table)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    return sum(
        numpy_helper.to_array(t).nbytes
        for t in model.graph.initializer
        if consumers.get(t.name, set()) - {"Gather"}
    )


def step_figures(
    bundle: Path,
    precision: Precision,
    batches: list[int],
    threads: int,
    bandwidth_gbs: float,
    cache_bandwidth_gbs: float,
) -> list[dict[str, Any]]:
    """Median decode step time per batch size (after 8 warm steps) and its physical bound, from
    memory bandwidth and from cache bandwidth (the weights of a small student fit in a large
    last-level cache, where the step is bound by the cache, not by memory)."""
    student = OnnxStudent(bundle, precision=precision, intra_op_threads=threads)
    cfg = student.manifest.student_config
    step_graph = student.manifest.graphs[student.precision]["decoder_step"]
    weights = weights_read_per_step(bundle / step_graph)
    out = []
    for batch in batches:
        rows = RunningBatch(student)
        sources = [
            student.source_of([("customer", PROMPTS[i % len(PROMPTS)])]) for i in range(batch)
        ]
        rows.prefill([(i, s, 0.0) for i, s in enumerate(sources)])
        times = []
        for _ in range(16):
            times.append(_timed(rows.step))
        step_s = statistics.median(times[8:])
        past, source = rows.widths
        kv = int(cfg["dec_layers"]) * 2 * batch * (past + source) * int(cfg["dec_hidden"]) * 4
        bound_s = (weights + kv) / (bandwidth_gbs * 1e9)
        cache_bound_s = (weights + kv) / (cache_bandwidth_gbs * 1e9)
        out.append({
            "precision": student.precision, "threads": threads, "batch": batch,
            "step_ms": round(step_s * 1000, 3), "weights_mb": round(weights / 1e6, 2),
            "kv_mb": round(kv / 1e6, 3), "bound_ms": round(bound_s * 1000, 3),
            "step_over_bound": round(step_s / bound_s, 2),
            "cache_bound_ms": round(cache_bound_s * 1000, 3),
            "step_over_cache_bound": round(step_s / cache_bound_s, 1),
            "rows_per_s": round(batch / step_s, 1),
        })  # fmt: skip
    return out


def torch_reference(bundle: Path, seconds: float) -> dict[str, Any]:
    """Torch eager `Student.generate`, one request at a time, on the same prompts."""
    import torch
    from safetensors.torch import load_file

    from distill_worker.model.student import Student, StudentConfig

    onnx = OnnxStudent(bundle, precision="fp32")
    student = Student(StudentConfig.from_dict(onnx.manifest.student_config))
    student.load_state_dict(load_file(str(bundle / "student.safetensors")))
    student.eval()
    torch.set_num_threads(1)
    latencies, tokens, end = [], 0, time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        ids, mask = onnx.encode_texts([onnx.source_of([("customer", PROMPTS[i % len(PROMPTS)])])])
        start = time.perf_counter()
        out = student.generate(torch.from_numpy(ids), torch.from_numpy(mask), onnx.limit(None))
        latencies.append(time.perf_counter() - start)
        tokens += len(out[0])
        i += 1
    total = sum(latencies)
    return {
        "replies_per_s": round(len(latencies) / total, 2),
        "tokens_per_s": round(tokens / total, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "replies": len(latencies),
    }


def make_synthetic_bundle(out: Path, max_new_tokens: int = 32) -> Path:
    """A bundle of the default `StudentConfig` size (decoder vocabulary 49152, 3+3 layers) with
    random weights and word-level tokenizers over the prompts; exported and parity-checked like
    a real one. For timing only."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from bundle_runtime.source import format_source
    from distill_worker.model.student import Student, StudentConfig
    from distill_worker.stages.export_onnx import export_bundle

    work = out.parent / f".{out.name}.tok"
    work.mkdir(parents=True, exist_ok=True)
    words = sorted({w for p in PROMPTS for w in format_source([("customer", p)], 4).split()})
    for name, special in (("enc", ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]),
                          ("dec", ["<pad>", "<bos>", "<eos>", "<unk>"])):  # fmt: skip
        vocab = {w: i for i, w in enumerate(special + words)}
        tok = Tokenizer(WordLevel(vocab, unk_token=special[1]))
        tok.pre_tokenizer = Whitespace()
        tok.add_special_tokens(special)
        tok.save(str(work / f"{name}.json"))
    torch.manual_seed(0)
    cfg = StudentConfig(n_intents=8, dec_bos_id=1, dec_eos_id=2, dec_pad_id=0)
    student = Student(cfg).eval()
    dec_size = len(words) + 4
    decoder_vocab = [i % dec_size for i in range(cfg.dec_vocab_size)]
    enc = Tokenizer.from_file(str(work / "enc.json"))
    samples = [[2, *enc.encode(format_source([("customer", p)], 4)).ids, 3] for p in PROMPTS[:4]]
    export_bundle(
        student, out, model_version="synthetic-1", intent_labels=[f"i{k}" for k in range(8)],
        oos_label=None, encoder_tokenizer_json=work / "enc.json",
        decoder_tokenizer_json=work / "dec.json",
        special_tokens={"enc_cls": 2, "enc_sep": 3, "enc_pad": 0, "dec_bos": 1, "dec_eos": 2,
                        "dec_pad": 0},
        max_source_tokens=128, max_new_tokens=max_new_tokens, context_turns=4,
        handoff_threshold=0.0, metrics={}, run_id=None, parity_samples=samples,
        decoder_vocab=decoder_vocab,
    )  # fmt: skip
    return out
