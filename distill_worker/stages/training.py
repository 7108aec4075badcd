"""What both stage recipes share: checkpoints, padding, the step loop, the log, progress.

Checkpoint: folder `step_XXXXXXXX/` with `model.safetensors` (student state dict),
`state.safetensors` (optimizer tensors, RNG states, the epoch's order, stage extras) and
`meta.json` (position, optimizer groups, scheduler, loss weights, config, stage extras); written
to a hidden folder, then renamed into place: a crash never leaves half a checkpoint. Epoch e
visits examples in `randperm(n)` drawn with seed (seed, e); the torch RNG (dropout) is saved and
restored, so a resumed run takes exactly the steps an uninterrupted one would. The position also
carries the training seconds spent so far (`elapsed_s`: a resumed run counts them against its
time cap, the clock does not restart) and whether early stopping ended the run (a resumed one
stays ended).

Under torchrun the same loop runs data-parallel through the hooks of `distill_worker.distributed`
(each a no-op in one process): batches are sharded across ranks, backward averages gradients,
rank 0 writes checkpoints and the log.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from distill_worker import distributed
from distill_worker.config import DistillConfig
from distill_worker.data.curriculum import tiered_order
from distill_worker.devices import Precision

CHECKPOINT_FORMAT = 1
_STEP_DIR = re.compile(r"^step_(\d{8})$")
# Config fields that may change between a run and its resumption without changing the maths.
_OPERATIONAL = {"stage1_max_minutes", "stage2_max_minutes", "log_every", "checkpoint_every"}
BatchT = TypeVar("BatchT")


@dataclass
class LoopPosition:
    """Where a run is: optimizer steps taken, current epoch, next batch, the epoch's order, the
    training seconds spent (over every resume), and whether early stopping ended it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    order: list[int] = field(default_factory=list)  # empty: draw it at the epoch's start
    elapsed_s: float = 0.0
    early_stopped: bool = False

    def copy(self) -> LoopPosition:
        return replace(self, order=list(self.order))


def epoch_order(
    n: int, seed: int, epoch: int, tiers: Sequence[int] = (), curriculum_epochs: int = 0
) -> list[int]:
    """The example order of one epoch: tier by tier (easy first) during the curriculum epochs
    when tiers are given (distill_worker.data.curriculum), otherwise a random permutation."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if tiers and epoch < curriculum_epochs:
        return tiered_order(tiers, generator)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def capture_rng() -> dict[str, Tensor]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), **{f"cuda.{i}": s for i, s in enumerate(cuda)}}


def restore_rng(states: dict[str, Tensor]) -> None:
    if distributed.restore_rank_rng():  # under torchrun: this rank's own states
        return
    torch.set_rng_state(states["cpu"])
    cuda = sorted((int(k[5:]), v) for k, v in states.items() if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([v for _, v in cuda])


def warmup_linear_decay(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier for step s: (s + 1) / W during W warmup steps, then linear to 0 at the end."""
    warmup = round(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


@dataclass
class Checkpoint:
    stage: str
    position: LoopPosition
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    loss_weights: dict[str, Any] | None = None
    rng: dict[str, Tensor] = field(default_factory=capture_rng)
    extra: dict[str, Tensor] = field(default_factory=dict)
    config_json: str = "{}"
    extra_meta: dict[str, Any] = field(default_factory=dict)  # JSON-ready stage state

    def save(self, directory: Path, keep: int = 2) -> Path:
        """Write atomically to directory/step_XXXXXXXX and prune older checkpoints. Under
        torchrun every rank calls this; rank 0 writes (with every rank's comm-hook state)."""
        final = directory / f"step_{self.position.step:08d}"
        ddp_state = distributed.gather_state()
        if not distributed.is_main():
            distributed.barrier()  # rank 0 is writing it
            return final
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir(exist_ok=True)  # a leftover of a crashed save is simply overwritten
        save_file({k: _cpu(v) for k, v in self.model.items()}, tmp / "model.safetensors")
        tensors = {f"rng.{k}": v for k, v in self.rng.items()}
        tensors.update({f"extra.{k}": _cpu(v) for k, v in self.extra.items()})
        tensors.update({f"extra.{k}": v for k, v in ddp_state.items()})
        tensors["order"] = torch.tensor(self.position.order, dtype=torch.long)
        for index, entry in self.optimizer["state"].items():
            tensors.update({f"optim.{index}.{k}": _cpu(v) for k, v in entry.items()})
        save_file(tensors, tmp / "state.safetensors")
        meta = {
            "format": CHECKPOINT_FORMAT,
            "stage": self.stage,
            **{k: v for k, v in vars(self.position).items() if k != "order"},
            "param_groups": self.optimizer["param_groups"],
            "scheduler": self.scheduler,
            "loss_weights": self.loss_weights,
            "config": json.loads(self.config_json),
            "extra": self.extra_meta,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        if final.exists():  # the same step saved twice: swap the old one out, then drop it
            old = directory / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        for stale in sorted(_step_dirs(directory))[:-keep]:
            shutil.rmtree(stale[1])
        distributed.barrier()
        return final

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} has checkpoint format {meta.get('format')}, expected 1")
        state = load_file(path / "state.safetensors")
        optim: dict[int, dict[str, Tensor]] = {}
        for key, value in state.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                optim.setdefault(int(index), {})[name] = value
        order = [int(i) for i in state["order"]]
        extra = {k[6:]: v for k, v in state.items() if k.startswith("extra.")}
        distributed.take_state(extra)  # the `ddp.*` comm-hook state, for this rank's sync
        return cls(
            stage=meta["stage"],
            position=LoopPosition(
                meta["step"],
                meta["epoch"],
                meta["batch_in_epoch"],
                order,
                # checkpoints written before these were kept: no seconds, not stopped
                elapsed_s=float(meta.get("elapsed_s", 0.0)),
                early_stopped=bool(meta.get("early_stopped", False)),
            ),
            model=load_file(path / "model.safetensors"),
            optimizer={"state": optim, "param_groups": meta["param_groups"]},
            scheduler=meta["scheduler"],
            loss_weights=meta["loss_weights"],
            rng={k[4:]: v for k, v in state.items() if k.startswith("rng.")},
            extra=extra,
            config_json=json.dumps(meta["config"], sort_keys=True),
            extra_meta=meta.get("extra", {}),
        )

    @staticmethod
    def latest(directory: Path) -> Path | None:
        return max(_step_dirs(directory), default=(-1, None))[1]


def check_resumable(ckpt: Checkpoint, stage: str, config_json: str, n_examples: int) -> None:
    """Refuse to resume a checkpoint of another stage, config (bar operational fields) or data.
    A field the checkpoint's config lacks (added to DistillConfig since) counts as its default."""
    stored = json.loads(DistillConfig().to_json()) | json.loads(ckpt.config_json)
    saved = {k: v for k, v in stored.items() if k not in _OPERATIONAL}
    current = {k: v for k, v in json.loads(config_json).items() if k not in _OPERATIONAL}
    n_saved = int(ckpt.extra["n_examples"]) if "n_examples" in ckpt.extra else -1
    if ckpt.stage != stage or saved != current or n_saved != n_examples:
        raise ValueError(
            f"checkpoint of stage {ckpt.stage!r} ({n_saved} examples) does not match this "
            f"{stage!r} run ({n_examples} examples) or its config: resume with the same config "
            "and examples, or use a fresh checkpoint_dir"
        )


def _cpu(t: Tensor) -> Tensor:
    return t.detach().cpu().contiguous()


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    children = list(directory.iterdir()) if directory.is_dir() else []
    ok = [c for c in children if _STEP_DIR.match(c.name) and (c / "meta.json").is_file()]
    return [(int(c.name[5:]), c) for c in ok]


def truncate_source(ids: list[int], max_tokens: int) -> list[int]:
    """Keep the first max_tokens - 1 tokens and the last one ([SEP])."""
    return ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + ids[-1:]


def pad(rows: list[list[int]], value: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad int rows -> (ids [B,L] long, mask [B,L] long)."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def to_device(batch: BatchT, device: torch.device) -> BatchT:
    """A copy of a batch dataclass with every tensor field moved to `device`."""
    values = {f.name: getattr(batch, f.name) for f in fields(batch)}  # type: ignore[arg-type]
    values = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in values.items()}
    return replace(batch, **values)  # type: ignore[type-var]


def check_precision(precision: Precision, device: torch.device) -> None:
    """Refuse a precision meant for another device type than the student's: autocast for the
    other type would leave this device's maths silently in fp32."""
    if precision.device_type != device.type:
        raise ValueError(
            f"a {precision.name} precision for {precision.device_type!r}, but the student is "
            f"on {device}: pass devices.precision_for(device), or move the student first"
        )


def optimizer_step(
    loss: Tensor,
    opt: Optimizer,
    sched: LRScheduler,
    clip: float,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """backward, clip the global grad norm at `clip` (0: no clipping), step, zero the grads.
    Returns the grad norm before clipping.

    With `scaler` (fp16 autocast, `Precision.grad_scaler()`): backward runs on the scaled loss,
    the gradients are unscaled before clipping (so `clip` and the norm are in true units), and
    `scaler.step` skips the update when they overflowed (the norm is then inf or NaN); the
    scaler then adapts its scale. The LR schedule advances on a skipped step too, as in the
    usual AMP recipe: the schedule counts batches, like the loop position and the checkpoints,
    so a resumed run stays in step; a skipped step (a few while the scale settles at the start)
    only means one update fewer. torch warns once when the very first step is skipped."""
    if scaler is None:
        distributed.backward(loss, opt)  # under torchrun: gradients averaged across ranks
    else:
        distributed.backward(scaler.scale(loss), opt)
        scaler.unscale_(opt)
    params = [p for group in opt.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(norm)


class MetricsLogger:
    """Appends one JSON object per line to `path` (flushed each line); rank 0 only."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO | None = None
        if distributed.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def progress_bar(total: int, initial: int, desc: str) -> tqdm[Any]:
    """A tqdm bar on stderr, shown only when stderr is a terminal."""
    shown = sys.stderr.isatty() and distributed.is_main()
    return tqdm(total=total, initial=initial, desc=desc, disable=not shown)


@dataclass(frozen=True)
class LoopSpec:
    stage: str
    n_examples: int
    batch_size: int
    epochs: int
    seed: int
    log_every: int
    checkpoint_every: int
    max_seconds: float | None
    tiers: Sequence[int] = ()  # curriculum tier per example (empty: no curriculum)
    curriculum_epochs: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * math.ceil(self.n_examples / self.batch_size)


def run_epochs(
    pos: LoopPosition,
    spec: LoopSpec,
    step_fn: Callable[[list[int]], dict[str, float]],
    save: Callable[[], object],
    logger: MetricsLogger,
    max_steps: int | None = None,
    epoch_end: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run `step_fn(example indices)` batch by batch from `pos`, updating `pos` after each step;
    log every `log_every` steps, call `save()` every `checkpoint_every`; after each full epoch
    call `epoch_end()` (early stopping: True ends the run); stop after `max_steps` steps of this
    call or once `max_seconds` of training have passed, counted over every resume
    (`pos.elapsed_s`). Returns the run's metrics (`stop_reason`: None when all epochs are done,
    else "early_stop", "max_steps" or "time_limit"; `elapsed_s`: training seconds in all)."""
    start, base, steps, last = time.monotonic(), pos.elapsed_s, 0, {}
    stop: str | None = "early_stop" if pos.early_stopped else None

    def elapsed() -> float:
        return base + time.monotonic() - start

    with progress_bar(spec.total_steps, pos.step, spec.stage) as bar:
        while pos.epoch < spec.epochs and stop is None:
            if not pos.order:
                pos.order = epoch_order(
                    spec.n_examples, spec.seed, pos.epoch, spec.tiers, spec.curriculum_epochs
                )
            size = spec.batch_size
            batches = [pos.order[i : i + size] for i in range(0, len(pos.order), size)]
            while pos.batch_in_epoch < len(batches):
                if max_steps is not None and steps >= max_steps:
                    stop = "max_steps"
                elif spec.max_seconds is not None and distributed.agree_stop(
                    elapsed() >= spec.max_seconds
                ):
                    stop = "time_limit"
                if stop is not None:
                    break
                # under torchrun: this rank's shard, metrics of the whole batch
                shard = distributed.shard(batches[pos.batch_in_epoch])
                last = distributed.mean_metrics(step_fn(shard))
                steps += 1
                pos.step += 1
                pos.batch_in_epoch += 1
                epoch_done = pos.batch_in_epoch == len(batches)
                if epoch_done:
                    pos.epoch, pos.batch_in_epoch, pos.order = pos.epoch + 1, 0, []
                    if epoch_end is not None and epoch_end() and pos.epoch < spec.epochs:
                        pos.early_stopped, stop = True, "early_stop"
                pos.elapsed_s = elapsed()
                bar.update(1)
                bar.set_postfix(loss=f"{last.get('loss', float('nan')):.4f}")
                if pos.step % spec.log_every == 0:
                    logger.log({"stage": spec.stage, "step": pos.step, "epoch": pos.epoch, **last})
                if pos.step % spec.checkpoint_every == 0:
                    save()
                if epoch_done:
                    break
    pos.elapsed_s = elapsed()
    return {
        "stage": spec.stage,
        "step": pos.step,
        "total_steps": spec.total_steps,
        "steps_run": steps,
        "epochs_run": pos.epoch,
        "completed": pos.step >= spec.total_steps,
        "stopped_early": stop is not None,
        "stop_reason": stop,
        "elapsed_s": round(pos.elapsed_s, 2),
        "max_seconds": spec.max_seconds,
        "last": last,
    }
