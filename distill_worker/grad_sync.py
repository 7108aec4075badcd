"""Gradient synchronisation for data-parallel stages: DDP over an optimizer's trainable
parameters and the comm hooks that compress gradients (fp16, bf16, PowerSGD).

`GradientSync` wraps the stage's trainable parameters in one module whose forward is the
identity on the loss the stage already computed: DDP sees the autograd graph
(`find_unused_parameters`, as a stage may leave an objective out of a batch) and reduces the
gradients bucket by bucket through the hook during backward. PowerSGD's state (per-rank error
feedback, warm-start P/Q, iteration, RNG) converts to and from named tensors for checkpoints.
Used through `distill_worker.distributed`; see there for how a stage runs on N ranks.

Errors: `DistributedError`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._C._distributed_c10d import GradBucket
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

logger = logging.getLogger(__name__)

Compression = Literal["none", "fp16", "bf16", "powersgd"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "fp16", "bf16", "powersgd")
Hook = Callable[[Any, GradBucket], torch.futures.Future[Tensor]]


class DistributedError(RuntimeError):
    """Data-parallel training cannot go on as asked; the message says what to change."""


@dataclass(frozen=True)
class CommConfig:
    """How gradients travel between ranks.

    powersgd_start_iter >= 2: DDP's first iteration runs plain all-reduce (PowerSGD's error
    feedback and warm start need one step of exact gradients)."""

    compression: Compression = "none"
    powersgd_rank: int = 1
    powersgd_start_iter: int = 2
    bucket_cap_mb: float = 25.0

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise DistributedError(
                f"unknown gradient compression {self.compression!r}; use one of {COMPRESSIONS}"
            )
        if self.powersgd_rank < 1 or self.powersgd_start_iter < 2 or self.bucket_cap_mb <= 0:
            raise DistributedError(
                "need powersgd_rank >= 1, powersgd_start_iter >= 2 and bucket_cap_mb > 0"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CommConfig:
        """DDP_COMPRESSION, DDP_POWERSGD_RANK, DDP_POWERSGD_START_ITER, DDP_BUCKET_CAP_MB."""
        e = dict(os.environ if env is None else env)
        compression = e.get("DDP_COMPRESSION", "none")
        if compression not in COMPRESSIONS:
            raise DistributedError(f"DDP_COMPRESSION={compression!r}; use one of {COMPRESSIONS}")
        return cls(
            compression=compression,
            powersgd_rank=int(e.get("DDP_POWERSGD_RANK", "1")),
            powersgd_start_iter=int(e.get("DDP_POWERSGD_START_ITER", "2")),
            bucket_cap_mb=float(e.get("DDP_BUCKET_CAP_MB", "25")),
        )


@dataclass
class CommStats:
    """What DDP handed to the comm hook: gradient buckets and their bytes (uncompressed).
    `in_hook` is True while a hook runs, so a collective counter (bench/ddp_comm.py) can add
    what the hook really sent to `payload_bytes`."""

    buckets: int = 0
    bucket_bytes: int = 0
    iterations: int = 0
    payload_bytes: int = 0
    in_hook: bool = False

    def reset(self) -> None:
        self.buckets = self.bucket_bytes = self.iterations = self.payload_bytes = 0


def _typed(hook: Hook) -> Hook:
    """DDP checks a hook's annotations as objects; this module's are strings (PEP 563)."""
    hook.__annotations__ = {
        "state": Any,
        "bucket": GradBucket,
        "return": torch.futures.Future[Tensor],
    }
    return hook


def counting_hook(inner: Hook, stats: CommStats) -> Hook:
    """Wrap a comm hook so that every bucket it reduces is counted in `stats`."""

    def hook(state: Any, bucket: GradBucket) -> torch.futures.Future[Tensor]:
        buffer = bucket.buffer()
        stats.buckets += 1
        stats.bucket_bytes += buffer.numel() * buffer.element_size()
        if bucket.is_last():
            stats.iterations += 1
        stats.in_hook = True
        try:
            return inner(state, bucket)
        finally:
            stats.in_hook = False

    return _typed(hook)


class _Trainable(nn.Module):
    """The stage's trainable parameters as one module for DDP. Its forward is the identity on
    the stage's loss, so DDP sees the autograd graph without re-running the model."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)

    def forward(self, loss: Tensor) -> Tensor:
        return loss


class GradientSync:
    """DDP over one optimizer's trainable parameters, with the configured comm hook."""

    def __init__(
        self, optimizer: Optimizer, comm: CommConfig, stats: CommStats | None = None
    ) -> None:
        self.optimizer = optimizer
        seen: set[int] = set()
        params: list[nn.Parameter] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        if not params:
            raise DistributedError("the optimizer has no trainable parameter to synchronise")
        self.numel = sum(p.numel() for p in params)
        _check_same_weights(params)
        self.ddp = DistributedDataParallel(
            _Trainable(params),
            init_sync=False,  # checked equal above; a broadcast now would race the forward
            find_unused_parameters=True,
            bucket_cap_mb=comm.bucket_cap_mb,
        )
        self.powersgd: powerSGD_hook.PowerSGDState | None = None
        hook: Hook
        state: Any = None  # the default process group
        if comm.compression == "fp16":
            hook = default_hooks.fp16_compress_hook
        elif comm.compression == "bf16":
            hook = default_hooks.bf16_compress_hook
        elif comm.compression == "powersgd":
            self.powersgd = state = powerSGD_hook.PowerSGDState(
                process_group=None,
                matrix_approximation_rank=comm.powersgd_rank,
                start_powerSGD_iter=comm.powersgd_start_iter,
                random_seed=0,
            )
            hook = _typed(_powersgd_checked)
        else:
            hook = default_hooks.allreduce_hook
        if stats is not None:
            hook = counting_hook(hook, stats)
        self.ddp.register_comm_hook(state, hook)

    def backward(self, loss: Tensor) -> None:
        self.ddp(loss).backward()

    def state_tensors(self, rank: int) -> dict[str, Tensor]:
        """This rank's PowerSGD state as named CPU tensors (empty for stateless hooks)."""
        s = self.powersgd
        if s is None:
            return {}
        _, key, pos, has_gauss, gauss = cast(tuple[Any, ...], s.rng.get_state(legacy=True))
        out = {
            f"r{rank}.iter": torch.tensor(
                [s.iter, s.total_numel_before_compression, s.total_numel_after_compression]
            ),
            f"r{rank}.rng_key": torch.tensor(key.astype("int64")),
            f"r{rank}.rng_meta": torch.tensor([pos, has_gauss, gauss], dtype=torch.float64),
        }
        for name in ("error", "p", "q"):
            memory: dict[int, Tensor] = getattr(s, _MEMORY[name])
            out.update({f"r{rank}.{name}.{i}": t.detach().cpu() for i, t in memory.items()})
        return out

    def load_state_tensors(self, rank: int, tensors: dict[str, Tensor], device: str) -> None:
        s = self.powersgd
        if s is None or f"r{rank}.iter" not in tensors:
            return
        s.iter, s.total_numel_before_compression, s.total_numel_after_compression = (
            int(v) for v in tensors[f"r{rank}.iter"]
        )
        pos, has_gauss, gauss = tensors[f"r{rank}.rng_meta"].tolist()
        key = tensors[f"r{rank}.rng_key"].numpy().astype("uint32")
        s.rng.set_state(("MT19937", key, int(pos), int(has_gauss), float(gauss)))
        for name in ("error", "p", "q"):
            prefix = f"r{rank}.{name}."
            memory = {
                int(k[len(prefix) :]): v.to(device)
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
            setattr(s, _MEMORY[name], memory)


_MEMORY = {"error": "error_dict", "p": "p_memory_dict", "q": "q_memory_dict"}


def _powersgd_checked(
    state: powerSGD_hook.PowerSGDState, bucket: GradBucket
) -> torch.futures.Future[Tensor]:
    """PowerSGD, dropping restored error feedback that does not fit this bucket.

    PowerSGD's second all-reduce (Q) is issued from a future's callback; on gloo that races
    DDP's own all-reduce of the used-parameter map and ranks can issue them in different orders.
    Waiting here keeps every collective in the same order on every rank (the price: no overlap
    of this bucket's communication with the rest of backward)."""
    index, n = bucket.index(), bucket.buffer().numel()
    error = state.error_dict.get(index)
    if error is not None and error.numel() != n:
        logger.warning("PowerSGD error feedback of bucket %d does not fit; reset", index)
        del state.error_dict[index]
    future = powerSGD_hook.powerSGD_hook(state, bucket)
    future.wait()
    return future


def _check_same_weights(params: list[nn.Parameter]) -> None:
    """Every rank must start from the same weights (same seed, same warm start)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).double() for p in params])
        finger = torch.stack([flat.sum(), flat.square().sum(), (flat * _ramp(flat)).sum()])
    low, high = finger.clone(), finger.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.allclose(low, high, rtol=1e-12, atol=0.0) or not math.isfinite(float(high[1])):
        raise DistributedError(
            "the ranks start this stage from different weights: build the student from the same "
            "seed and warm start on every rank (and resume all of them from one checkpoint)"
        )


def _ramp(flat: Tensor) -> Tensor:
    """Position weights, so that a permutation of the same values does not pass as equal."""
    return torch.linspace(0.5, 1.5, flat.numel(), dtype=flat.dtype, device=flat.device)
