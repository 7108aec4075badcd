"""Bytes communicated per training step under DDP, with and without gradient compression.

Start it with torchrun (2 processes on CPU with gloo; on GPUs it uses NCCL):

    OMP_NUM_THREADS=1 .venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 2 \
        bench/ddp_comm.py --steps 8 --json bench/results/ddp_comm.json

For each compression (none, fp16, bf16, powersgd) a fresh student runs stage 1 (encoder + intent
head, the real `EncoderStage`) on synthetic examples. Two figures per step, counted on rank 0:
- gradient bytes: what DDP handed to the comm hook (bucket buffers, uncompressed);
- all-reduce payload: bytes of the tensors the hook passed to `all_reduce` (what goes on the
  wire, before the backend's own ring/tree factor), counted by a wrapper around all_reduce that
  only counts while a hook runs (`CommStats.in_hook`).
Steps before `--powersgd-start` are PowerSGD's plain all-reduce warm-up; the figures are averaged
over the later steps, the same steps for every compression.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from distill_worker import distributed
from distill_worker.config import DistillConfig
from distill_worker.data.examples import IntentExample
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.encoder_stage import EncoderStage

FEATURES = 384


def examples(n: int, vocab: int, n_intents: int, seed: int = 0) -> list[IntentExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % n_intents
        ids = [1, *(rng.randrange(3, vocab) for _ in range(rng.randrange(6, 30))), 2]
        out.append(
            IntentExample(
                input_ids=ids,
                label=label,
                teacher_logits=[3.0 if c == label else 0.0 for c in range(n_intents)],
                teacher_features=[rng.gauss(0.0, 1.0) for _ in range(FEATURES)],
            )
        )
    return out


def count_payload(stats: distributed.CommStats) -> Callable[[], None]:
    """Wrap torch.distributed.all_reduce (which the DDP hooks call) to add the bytes of each
    tensor reduced inside a hook to stats.payload_bytes; returns the undo function."""
    original = dist.all_reduce

    def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if stats.in_hook:
            stats.payload_bytes += tensor.numel() * tensor.element_size()
        return original(tensor, *args, **kwargs)

    dist.all_reduce = counted  # type: ignore[assignment]

    def undo() -> None:
        dist.all_reduce = original

    return undo


def measure(compression: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run `args.steps` steps of stage 1 with this compression; per-step bytes on this rank."""
    ctx = distributed.current()
    assert ctx is not None and ctx.stats is not None
    stats = ctx.stats
    ctx.comm = distributed.CommConfig(
        compression=compression,  # type: ignore[arg-type]
        powersgd_rank=args.powersgd_rank,
        powersgd_start_iter=args.powersgd_start,
    )
    torch.manual_seed(0)
    student = Student(
        StudentConfig(
            n_intents=args.intents,
            enc_vocab_size=args.vocab,
            enc_hidden=args.hidden,
            enc_layers=args.layers,
            enc_heads=max(1, args.hidden // 64),
            enc_ffn=args.hidden * 4,
            dec_vocab_size=64,
            dec_hidden=64,
            dec_heads=2,
            dec_layers=1,
            dec_ffn=128,
            dropout=0.0,
        )
    )
    config = DistillConfig(
        max_source_tokens=32,
        stage1_epochs=1,
        stage1_batch_size=args.batch_size,
        dynamic_weights=False,
        log_every=1,
        checkpoint_every=10_000,
    )
    data = examples(args.steps * args.batch_size, args.vocab, args.intents)
    stage = EncoderStage(student, config, data, FEATURES, work / "log.jsonl", work / "ckpt")
    stage.setup()
    warmup = stage.train(max_steps=args.powersgd_start)  # PowerSGD's plain all-reduce steps
    stats.reset()
    started = time.perf_counter()
    steady = stage.train(max_steps=args.steps - args.powersgd_start)
    seconds = time.perf_counter() - started  # includes the checkpoint train() ends with
    stage.cleanup()
    n = steady["steps_run"]
    n_params = sum(p.numel() for g in stage.optimizer.param_groups for p in g["params"])
    return {
        "compression": compression,
        "trainable_params": n_params,
        "steps_counted": n,
        "gradient_bytes_per_step": stats.bucket_bytes / n,
        "payload_bytes_per_step": stats.payload_bytes / n,
        "buckets_per_step": stats.buckets / n,
        "seconds_per_step": seconds / n,
        "loss_after_warmup": float(warmup["last"]["loss"]),
        "last_loss": float(steady["last"]["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=30522, help="encoder vocabulary (MiniLM's)")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--intents", type=int, default=77)
    parser.add_argument("--powersgd-rank", type=int, default=1)
    parser.add_argument("--powersgd-start", type=int, default=2)
    parser.add_argument(
        "--compressions",
        nargs="+",
        default=list(distributed.COMPRESSIONS),
        choices=distributed.COMPRESSIONS,
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here (rank 0)")
    args = parser.parse_args()
    if args.steps <= args.powersgd_start:
        parser.error("--steps must be larger than --powersgd-start")
    stats = distributed.CommStats()
    with distributed.data_parallel(stats=stats) as ctx:
        if ctx is None:
            parser.error("start it with torchrun --nproc-per-node 2 (or more)")
        undo = count_payload(stats)
        results = []
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for name in args.compressions:
                    results.append(measure(name, args, Path(tmp) / name))
        finally:
            undo()
        if ctx.rank == 0:
            report(results, ctx.world_size, ctx.backend, args)


def report(
    results: list[dict[str, Any]], world: int, backend: str, args: argparse.Namespace
) -> None:
    base = next((r for r in results if r["compression"] == "none"), results[0])
    print(
        f"DDP, {world} ranks ({backend}), stage 1 student: {base['trainable_params']:,} "
        f"trainable parameters, batch {args.batch_size}, "
        f"steps {args.powersgd_start + 1}..{args.steps} averaged"
    )
    print(
        f"{'compression':<12} {'gradient B/step':>16} {'all-reduce B/step':>18} "
        f"{'vs none':>8} {'s/step':>7} {'loss':>18}"
    )
    for r in results:
        ratio = r["payload_bytes_per_step"] / base["payload_bytes_per_step"]
        print(
            f"{r['compression']:<12} {r['gradient_bytes_per_step']:>16,.0f} "
            f"{r['payload_bytes_per_step']:>18,.0f} {ratio:>8.3f} {r['seconds_per_step']:>7.2f} "
            f"{r['loss_after_warmup']:>8.4f}->{r['last_loss']:.4f}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "world_size": world,
                    "backend": backend,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
