"""The `device` setting and the training precision (`distill_worker.devices`), on this machine.

What a CPU can check: bad settings and CUDA without a GPU are refused with a message that says
what to set, a pinned GPU is refused under torchrun, `cpu` / `auto` resolve to the CPU, and the
CPU's precision is plain fp32 (no autocast, no scaler). The mixed precisions themselves run for
real in test_stage_precision.py (CPU autocast, and a GPU test).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="devices need the `train` extra (torch)")

from distill_worker.devices import (  # noqa: E402
    DeviceError,
    Precision,
    describe,
    precision_for,
    resolve_device,
)

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside torchrun unless a test says otherwise."""
    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "setting", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", "cpu ", "cpu\n", ""]
)
def test_unknown_settings_are_refused_with_the_valid_ones(setting: str) -> None:
    with pytest.raises(DeviceError, match=r"use auto, cpu, cuda or cuda:N"):
        resolve_device(setting)


def test_cpu_is_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


@no_gpu
def test_auto_without_a_gpu_is_the_cpu() -> None:
    assert resolve_device("auto") == torch.device("cpu")


@no_gpu
@pytest.mark.parametrize("setting", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused_and_says_what_to_use(setting: str) -> None:
    with pytest.raises(DeviceError, match=r"no CUDA GPU.*use --device cpu or auto"):
        resolve_device(setting)


def test_a_pinned_gpu_is_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(DeviceError, match=r"rank 1 of a torchrun launch: use --device cuda"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="rank 0"):
        resolve_device("cuda:1", local_rank=0)  # an explicit rank counts too
    assert resolve_device("cpu") == torch.device("cpu")  # gloo ranks on CPUs stay possible


def test_one_process_is_not_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORLD_SIZE 1 (torchrun --nproc-per-node 1) pins nothing: cuda:N is only refused for the
    GPU being absent here, never for the launch."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda", 0)
    else:
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_describe_the_cpu() -> None:
    assert describe(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} torch threads)"


def test_the_cpu_precision_is_plain_fp32() -> None:
    precision = precision_for(torch.device("cpu"))
    assert precision == Precision("cpu") and precision.name == "fp32"
    assert precision.dtype is None and precision.grad_scaler() is None
    assert precision_for(torch.device("cpu"), mixed=False) == precision
    x, w = torch.randn(3, 4), torch.randn(4, 5)
    with precision.autocast():
        assert not torch.is_autocast_enabled("cpu")
        y = x @ w
    assert y.dtype is torch.float32 and torch.equal(y, x @ w)


def test_a_mixed_precision_autocasts_and_only_fp16_scales() -> None:
    bf16, fp16 = Precision("cpu", torch.bfloat16), Precision("cpu", torch.float16)
    assert (bf16.name, fp16.name) == ("bf16", "fp16")
    x, w = torch.randn(3, 4), torch.randn(4, 5)
    with bf16.autocast():
        assert torch.is_autocast_enabled("cpu")
        assert (x @ w).dtype is torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")  # restored after the block
    assert bf16.grad_scaler() is None
    scaler = fp16.grad_scaler()
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.get_scale() == 2.0**16
    assert fp16.grad_scaler() is not scaler  # a fresh one per training run


def test_a_precision_must_name_a_known_device_type_and_dtype() -> None:
    with pytest.raises(DeviceError, match="use 'cpu' or 'cuda'"):
        Precision("mps", torch.bfloat16)
    with pytest.raises(DeviceError, match="use None"):
        Precision("cuda", torch.float64)


@no_gpu
def test_cuda_precisions_can_be_described_without_a_gpu() -> None:
    """The CUDA precisions are plain values (a stage refuses one for a CPU student)."""
    assert Precision("cuda", torch.bfloat16).name == "bf16"
    assert precision_for(torch.device("cuda"), mixed=False) == Precision("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_auto_and_cuda_are_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"torch sees {count}"):
        resolve_device(f"cuda:{count}")
    assert describe(torch.device("cuda", 0)).startswith("cuda:0 (")
    major = torch.cuda.get_device_capability(0)[0]
    expected = torch.bfloat16 if major >= 8 or torch.version.hip else torch.float16
    assert precision_for(torch.device("cuda", 0)).dtype is expected
