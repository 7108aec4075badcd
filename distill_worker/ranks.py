"""A whole distillation run under `torchrun`: which rank does what.

    torchrun --nproc-per-node N -m chat_api.cli distill ...    (or `chatdistill distill --nproc N`)

    step                          rank 0                          ranks 1..N-1
    [1/7] data                    reads the rows                  read the same rows (seeded split)
    [2/7] encoder teacher         fine-tunes it, saves it         wait, then load the saved one
    [3/7] teacher replies         asks the teacher (its cache)    wait, receive rank 0's replies
    [4/7] stage 1                 data-parallel (distributed.py)  data-parallel
          teacher labels          computes them                   receive rank 0's
    [5/7] stage 2                 data-parallel                   data-parallel
    [6/7] evaluate, [7/7] export  alone                           wait, then read the manifest

so the teacher is asked once per prompt in total, whatever the number of ranks, and only rank 0
writes the work folder, the logs and the bundle. Every rank seeds torch the same way and builds
the same student; DDP broadcasts rank 0's weights when a stage starts, so the ranks agree from
the first step. Checkpoints hold one copy of the weights and the epoch's order, so a run resumes
under another world size (per-rank state, PowerSGD's error feedback and dropout RNGs, is then
started afresh, with a warning).

Waits can be long (rank 0 labels every prompt while the others wait at a barrier), so the
process group of a whole run waits `DDP_TIMEOUT_MINUTES` (default 720) before calling a rank
lost. A rank that fails ends the launch: torchrun stops the others.

Errors: `distill_worker.distributed.DistributedError`, `distill_worker.devices.DeviceError`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from distill_worker import distributed
from distill_worker.devices import resolve_device
from distill_worker.teacher.base import Message, ScoredReply

__all__ = [
    "NotOnThisRank",
    "from_main",
    "main_first",
    "main_log",
    "run_device",
    "under_torchrun",
    "whole_run",
]

T = TypeVar("T")
DEFAULT_TIMEOUT_MINUTES = 720.0


def under_torchrun() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def whole_run(device: str) -> Iterator[distributed.Context | None]:
    """The process group of a whole run when started by torchrun with WORLD_SIZE > 1 (NCCL when
    `device` resolves to a GPU, gloo on the CPU), else nothing. Gradient compression comes from
    DDP_COMPRESSION etc. (`CommConfig.from_env`)."""
    if not under_torchrun():
        yield None
        return
    chosen = resolve_device(device)  # this rank's GPU, or the CPU
    minutes = float(os.environ.get("DDP_TIMEOUT_MINUTES", DEFAULT_TIMEOUT_MINUTES))
    if minutes <= 0:
        raise distributed.DistributedError(f"DDP_TIMEOUT_MINUTES={minutes:g}: use minutes > 0")
    ctx = distributed.init_from_env(
        backend="nccl" if chosen.type == "cuda" else "gloo",
        timeout=dt.timedelta(minutes=minutes),
    )
    try:
        yield ctx
    finally:
        distributed.shutdown()


def run_device(setting: str) -> torch.device:
    """The device this process trains on: its rank's under torchrun, else the setting's."""
    ctx = distributed.current()
    return ctx.device if ctx is not None else resolve_device(setting)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first; the others wait at a barrier and then run it, finding what
    rank 0 left (a saved teacher, a prepared folder, created tables). A plain block in one
    process."""
    if not distributed.is_main():
        distributed.barrier()
    yield
    if distributed.is_main():
        distributed.barrier()


def from_main(compute: Callable[[], T]) -> T:
    """`compute()` on rank 0, its result sent to every rank (pickled); in one process, just
    `compute()`. The other ranks never call it."""
    ctx = distributed.current()
    if ctx is None:
        return compute()
    box: list[Any] = [compute() if ctx.rank == 0 else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return box[0]  # type: ignore[no-any-return]


def main_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log` on rank 0; the other ranks' lines are dropped (they would repeat rank 0's)."""
    if distributed.is_main():
        return log
    return lambda _line: None


class NotOnThisRank:
    """The responder seen by ranks other than 0: they receive rank 0's replies and never ask
    the teacher; a call is a bug in the rank split, reported as such."""

    def __init__(self, teacher_id: str) -> None:
        self.teacher_id = teacher_id

    def _refuse(self) -> distributed.DistributedError:
        ctx = distributed.current()
        rank = ctx.rank if ctx is not None else 0
        return distributed.DistributedError(
            f"rank {rank} asked the teacher {self.teacher_id}: only rank 0 labels; the others "
            "receive its results (distill_worker.ranks)"
        )

    def generate(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[list[str]]:
        raise self._refuse()

    def score(self, messages: list[Message], reply: str, *, top_k: int) -> ScoredReply:
        raise self._refuse()

    def tokenize(self, text: str) -> list[int]:
        raise self._refuse()
