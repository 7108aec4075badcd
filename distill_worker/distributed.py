"""Data-parallel training of the stages under `torchrun`: process group, gradient sync, compression.

How a stage runs on N processes (ranks). Every rank builds the same student from the same seed
and walks the same epoch order; `shard` gives each rank every N-th example of each global batch,
so the batch size, the steps, the schedule and the checkpoints are those of one process. A rank's
loss is scaled by its share of the batch (`loss_scale`) before DDP averages the gradients, which
makes the averaged gradient the full batch's for losses that are row means. Gradients go through
`DistributedDataParallel` over the optimizer's trainable parameters: the loss, already computed
by the stage, passes through DDP's forward (`find_unused_parameters`, as a stage may leave an
objective out of a batch), and backward reduces the gradients bucket by bucket through the comm
hook: plain all-reduce, fp16 or bf16 compression, or PowerSGD (low-rank, with error feedback).

Rank 0 writes checkpoints and the metrics log; the PowerSGD state of every rank (its error
feedback is per rank) is gathered into rank 0's checkpoint and handed back on resume.

Backends: NCCL on GPUs (one per rank, `LOCAL_RANK`), gloo on CPUs. The DDP wrapper and the
comm hooks live in `grad_sync.py`; this module owns the process group and the hooks that
`stages/training.py` calls (each a no-op in a single process).

Errors: `DistributedError` (not under torchrun, ranks that disagree, a bad compression option).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from distill_worker.grad_sync import (
    COMPRESSIONS,
    CommConfig,
    CommStats,
    DistributedError,
    GradientSync,
)

__all__ = [
    "COMPRESSIONS",
    "CommConfig",
    "CommStats",
    "Context",
    "DistributedError",
    "GradientSync",
    "agree_stop",
    "backward",
    "barrier",
    "current",
    "data_parallel",
    "gather_state",
    "init_from_env",
    "is_main",
    "mean_metrics",
    "restore_rank_rng",
    "shard",
    "shutdown",
    "take_state",
    "unit_means",
]

logger = logging.getLogger(__name__)

_STATE_PREFIX = "ddp."


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    comm: CommConfig
    stats: CommStats | None = None
    loss_scale: float = 1.0  # this rank's share of the current batch times world_size
    sync: GradientSync | None = None
    pending_state: dict[str, Tensor] = field(default_factory=dict)

    def sync_for(self, optimizer: Optimizer) -> GradientSync:
        if self.sync is None or self.sync.optimizer is not optimizer:
            self.sync = GradientSync(optimizer, self.comm, self.stats)
            if self.pending_state:
                self._restore(self.sync)
        return self.sync

    def _restore(self, sync: GradientSync) -> None:
        saved = self.pending_state
        self.pending_state = {}
        if f"r{self.rank}.iter" not in saved:
            return
        world = int(saved.get("world_size", torch.tensor(-1)))
        numel = int(saved.get("numel", torch.tensor(-1)))
        if world != self.world_size or numel != sync.numel:
            logger.warning(
                "the checkpoint's PowerSGD state is for %d ranks and %d parameters, this run "
                "has %d and %d: its error feedback starts afresh",
                world,
                numel,
                self.world_size,
                sync.numel,
            )
            return
        sync.load_state_tensors(self.rank, saved, str(self.device))


_CONTEXT: Context | None = None


def current() -> Context | None:
    """The active data-parallel context, or None in a single process."""
    return _CONTEXT


def is_main() -> bool:
    return _CONTEXT is None or _CONTEXT.rank == 0


def init_from_env(
    comm: CommConfig | None = None,
    *,
    backend: str | None = None,
    stats: CommStats | None = None,
    timeout: dt.timedelta = dt.timedelta(minutes=30),
) -> Context:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT). NCCL with one GPU per rank when CUDA is there, gloo otherwise. Without `comm`,
    the compression comes from DDP_COMPRESSION etc. (`CommConfig.from_env`). `timeout`: how long
    a collective (a barrier) waits for the other ranks before failing."""
    global _CONTEXT
    if _CONTEXT is not None:
        raise DistributedError("the process group is already initialised in this process")
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise DistributedError(
            f"{', '.join(missing)} not set: start the stages with torchrun, e.g. "
            "`torchrun --nproc-per-node 2 your_script.py`"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if chosen == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK {local_rank} but {torch.cuda.device_count()} GPU(s): start at most "
                "one process per GPU (--nproc-per-node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group(
            "nccl", rank=rank, world_size=world, device_id=device, timeout=timeout
        )
    else:
        device = torch.device("cpu")
        dist.init_process_group(chosen, rank=rank, world_size=world, timeout=timeout)
    comm = comm if comm is not None else CommConfig.from_env()
    _CONTEXT = Context(rank, world, local_rank, device, chosen, comm, stats)
    return _CONTEXT


def shutdown() -> None:
    global _CONTEXT
    if _CONTEXT is not None:
        _CONTEXT = None
        dist.destroy_process_group()


@contextmanager
def data_parallel(
    comm: CommConfig | None = None, *, backend: str | None = None, stats: CommStats | None = None
) -> Iterator[Context | None]:
    """Data-parallel for the block when started by torchrun with WORLD_SIZE > 1, else nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield None
        return
    ctx = init_from_env(comm, backend=backend, stats=stats)
    try:
        yield ctx
    finally:
        shutdown()


# -- hooks used by stages/training.py (each a no-op in a single process) ---------------------


def shard(indices: list[int]) -> list[int]:
    """This rank's part of a global batch (every world_size-th index from its rank); sets the
    loss scale that makes DDP's average the full batch's mean. A rank left without an example
    (a batch smaller than the world) repeats one, with a tiny share."""
    ctx = _CONTEXT
    if ctx is None:
        return indices
    mine = indices[ctx.rank :: ctx.world_size]
    if mine:
        ctx.loss_scale = ctx.world_size * len(mine) / len(indices)
        return mine
    ctx.loss_scale = 0.0  # contributes nothing, but takes part in the collective
    return [indices[ctx.rank % len(indices)]]


def backward(loss: Tensor, optimizer: Optimizer) -> None:
    """loss.backward(), with gradients averaged across ranks under data parallelism."""
    ctx = _CONTEXT
    if ctx is None:
        loss.backward()  # type: ignore[no-untyped-call]
        return
    ctx.sync_for(optimizer).backward(loss * ctx.loss_scale)


def mean_metrics(values: dict[str, float]) -> dict[str, float]:
    """Metrics of this rank's shard -> the whole batch's: each rank weighted by its share of the
    batch; a metric only some ranks have (an objective absent from a shard) is averaged over
    those that have it."""
    ctx = _CONTEXT
    if ctx is None:
        return values
    gathered: list[list[str] | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, sorted(values))
    names = sorted({n for part in gathered for n in (part or [])})
    share = ctx.loss_scale / ctx.world_size
    rows = torch.tensor(
        [[values[n] * share, share] if n in values else [0.0, 0.0] for n in names],
        dtype=torch.float64,
        device=ctx.device,  # NCCL reduces CUDA tensors only
    ).reshape(len(names), 2)
    dist.all_reduce(rows)
    rows = rows.cpu()
    out = dict(values)
    for i, name in enumerate(names):
        if rows[i, 1] > 0:
            out[name] = float(rows[i, 0] / rows[i, 1])
    return out


def unit_means(local: dict[str, tuple[float, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """For losses that are means over units (target tokens, labelled rows) rather than over
    rows. `local`: name -> (this rank's mean, its number of units); every rank passes the same
    names (a term absent from its shard: count 0). Returns (factor, mean) per name:

    - factor: multiply this rank's term by it before `backward` so that, after the row-share
      scaling there and DDP's average, the gradient is that of the whole batch's unit mean
      (count_r / count_all * world / loss_scale_r), instead of a row-weighted mix of shard means;
    - mean: the whole batch's unit mean (for the log), or absent when no rank had a unit.

    One all-reduce. In a single process: factors 1, the means as given."""
    ctx = _CONTEXT
    if ctx is None:
        return {name: 1.0 for name in local}, {n: m for n, (m, c) in local.items() if c > 0}
    names = sorted(local)
    live = ctx.loss_scale > 0  # a rank that repeats an example to take part adds nothing
    rows = torch.tensor(
        [[local[n][0] * local[n][1], local[n][1]] if live else [0.0, 0.0] for n in names],
        dtype=torch.float64,
        device=ctx.device,
    ).reshape(len(names), 2)
    dist.all_reduce(rows)
    rows = rows.cpu()
    factors: dict[str, float] = {}
    means: dict[str, float] = {}
    for i, name in enumerate(names):
        total_sum, total_count = float(rows[i, 0]), float(rows[i, 1])
        mine = local[name][1] if live else 0.0
        factors[name] = (
            mine / total_count * ctx.world_size / ctx.loss_scale
            if total_count > 0 and live
            else 0.0
        )
        if total_count > 0:
            means[name] = total_sum / total_count
    return factors, means


def agree_stop(stop: bool) -> bool:
    """True on every rank when any rank wants to stop (a time limit read on each clock)."""
    ctx = _CONTEXT
    if ctx is None:
        return stop
    flag = torch.tensor([1 if stop else 0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def barrier() -> None:
    if _CONTEXT is not None:
        dist.barrier()


def gather_state() -> dict[str, Tensor]:
    """Collective: every rank's gradient-compression state, for rank 0's checkpoint (named
    `ddp.*`); empty on other ranks and for stateless hooks."""
    ctx = _CONTEXT
    if ctx is None:
        return {}
    mine: dict[str, Tensor] = {f"r{ctx.rank}.rng.cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        mine[f"r{ctx.rank}.rng.cuda"] = torch.cuda.get_rng_state(ctx.device)
    if ctx.sync is not None:
        mine.update(ctx.sync.state_tensors(ctx.rank))
    elif ctx.pending_state:  # resumed but no step taken yet: keep what was loaded
        prefix = f"r{ctx.rank}."
        kept = {k: v for k, v in ctx.pending_state.items() if k.startswith(prefix)}
        mine.update({k: v for k, v in kept.items() if ".rng." not in k})
    gathered: list[dict[str, Tensor] | None] = [None] * ctx.world_size
    dist.all_gather_object(gathered, mine)
    if ctx.rank != 0:
        return {}
    out = {f"{_STATE_PREFIX}{k}": v for part in gathered for k, v in (part or {}).items()}
    numel = ctx.sync.numel if ctx.sync is not None else int(ctx.pending_state.get("numel", -1))
    out[f"{_STATE_PREFIX}world_size"] = torch.tensor(ctx.world_size)
    out[f"{_STATE_PREFIX}numel"] = torch.tensor(numel)
    return out


def take_state(extra: dict[str, Tensor]) -> None:
    """Remove the `ddp.*` entries from a loaded checkpoint's extras; under data parallelism
    keep them for the next gradient sync to restore."""
    state = {
        k[len(_STATE_PREFIX) :]: extra.pop(k) for k in list(extra) if k.startswith(_STATE_PREFIX)
    }
    if _CONTEXT is not None:
        _CONTEXT.pending_state = state
        _CONTEXT.sync = None  # a resumed stage has a new optimizer; its sync starts from `state`


def restore_rank_rng() -> bool:
    """Restore the RNG states this rank saved (its dropout draws differ from rank 0's); False
    when there are none (single process, or a checkpoint from another world size)."""
    ctx = _CONTEXT
    if ctx is None or f"r{ctx.rank}.rng.cpu" not in ctx.pending_state:
        return False
    torch.set_rng_state(ctx.pending_state[f"r{ctx.rank}.rng.cpu"])
    cuda = ctx.pending_state.get(f"r{ctx.rank}.rng.cuda")
    if cuda is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(cuda, ctx.device)
    return True
