"""Where a run's tensors live: the `device` setting, and mixed precision on CUDA.

    resolve_device("auto")    -> cuda:<LOCAL_RANK> when torch sees a GPU, else cpu
    resolve_device("cpu")     -> cpu (also on a GPU machine)
    resolve_device("cuda")    -> cuda:<LOCAL_RANK> (cuda:0 outside torchrun); an error without one
    resolve_device("cuda:N")  -> that GPU, in one process only (torchrun gives each rank its own)

Mixed precision (`Precision`): on CUDA the forward passes and losses run under autocast, bf16
where the GPU computes it natively (compute capability 8.0, Ampere, and later: no loss scaling
needed; older GPUs only emulate bf16, slowly), else fp16 with a `GradScaler` (it scales the
loss, skips a step whose gradients overflowed and adapts its scale). The parameters, the
optimizer state and the losses stay fp32 (the losses cast their logits up). On the CPU nothing
changes: the maths is fp32, exactly as before the setting existed (`Precision("cpu",
torch.bfloat16)` is possible, and the tests use it to run the autocast path on a CPU).

The ONNX export always runs on the CPU from the trained weights (`stages.export_onnx`).

Errors: `DeviceError` (an unknown setting, CUDA asked for but absent, a GPU index out of range).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch

from distill_worker.run_config import DEVICE_PATTERN

__all__ = [
    "DEVICE_PATTERN",
    "DeviceError",
    "Precision",
    "describe",
    "precision_for",
    "resolve_device",
]

_DEVICE = re.compile(DEVICE_PATTERN)


class DeviceError(ValueError):
    """The device setting cannot be honoured here; the message says what to set instead."""


def resolve_device(setting: str, *, local_rank: int | None = None) -> torch.device:
    """The torch device for a `device` setting. Under torchrun (`local_rank`, default from
    LOCAL_RANK when WORLD_SIZE > 1) `auto` and `cuda` mean this rank's GPU, and `cuda:N` is
    refused (every rank would take the same GPU)."""
    if not _DEVICE.fullmatch(setting):
        raise DeviceError(f"device {setting!r}: use auto, cpu, cuda or cuda:N")
    if local_rank is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    pinned = setting.startswith("cuda:")
    if pinned and local_rank is not None:
        raise DeviceError(
            f"device {setting!r} pins one GPU, but this is rank {local_rank} of a torchrun "
            "launch: use --device cuda (each rank takes the GPU of its LOCAL_RANK)"
        )
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {setting!r} but torch sees no CUDA GPU here (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}): use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    index = int(setting.split(":", 1)[1]) if pinned else (local_rank or 0)
    if index >= count:
        raise DeviceError(
            f"GPU {index} asked for, but torch sees {count}: start at most one process per GPU "
            "or pick an index below the count"
        )
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """One line for the run's log and metrics: the device, and the GPU's name."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} torch threads)"


_NAMES: dict[torch.dtype | None, Literal["fp32", "bf16", "fp16"]] = {
    None: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
}


@dataclass(frozen=True)
class Precision:
    """The training precision on one device type ("cpu" or "cuda"): `dtype` None is plain fp32,
    else the autocast dtype (bfloat16 or float16)."""

    device_type: str
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        if self.device_type not in ("cpu", "cuda"):
            raise DeviceError(
                f"precision for device type {self.device_type!r}: use 'cpu' or 'cuda' "
                "(torch.device(...).type)"
            )
        if self.dtype not in _NAMES:
            raise DeviceError(
                f"autocast dtype {self.dtype}: use None (fp32), torch.bfloat16 or torch.float16"
            )

    @property
    def name(self) -> Literal["fp32", "bf16", "fp16"]:
        return _NAMES[self.dtype]

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """Forward passes and losses in the mixed dtype (no-op in fp32)."""
        ctx: Any = (
            torch.autocast(device_type=self.device_type, dtype=self.dtype)
            if self.dtype is not None
            else nullcontext()
        )
        with ctx:
            yield

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh loss scaler for fp16 (its small exponent range underflows gradients); None
        for fp32 and bf16 (bf16 has fp32's exponent range)."""
        if self.dtype is torch.float16:
            return torch.amp.GradScaler(self.device_type)
        return None


def precision_for(device: torch.device, mixed: bool = True) -> Precision:
    """bf16 autocast on a CUDA GPU that computes bf16 natively, fp16 (with a grad scaler) on an
    older one, fp32 on the CPU or when `mixed` is off."""
    if device.type != "cuda" or not mixed:
        return Precision(device.type)
    if _native_bf16(device):
        return Precision("cuda", torch.bfloat16)
    return Precision("cuda", torch.float16)


def _native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware. Not `torch.cuda.is_bf16_supported()`: it
    asks about the current device only and, by default, also says yes where bf16 is emulated."""
    if torch.version.hip:  # ROCm GPUs support bf16
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8
