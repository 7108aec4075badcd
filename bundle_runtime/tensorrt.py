"""TensorRT FP16 engines for a bundle's graphs, behind the ONNX Runtime session interface.

Imported only when `serving.provider` is `tensorrt` (`OnnxStudent(provider="tensorrt")`): the
serving image without a GPU never loads it. Written against TensorRT 10's Python API (named I/O
tensors, `build_serialized_network`, `execute_async_v3`) and cuda-python for device memory.

Build: each ONNX graph of the chosen precision is parsed (`trt.OnnxParser`) and built with the
FP16 flag and one optimisation profile: axis 0 (batch) from 1 to `max_batch` (optimum
`opt_batch`), every other dynamic axis (source, past, target lengths) from 1 to `max_length`
(optimum `opt_length`). Engines are cached per GPU architecture and TensorRT version inside the
bundle folder (`tensorrt/sm90-trt10.3.0/<role>.engine`; the manifest does not list them, so the
bundle's checksum is unchanged) and rebuilt when missing.

`TrtSession.run(None, feed)` takes and returns numpy arrays like `ort.InferenceSession.run`, so
`OnnxStudent`'s decode loop and the batcher run unchanged on it.

Errors:
    TensorRtUnavailable   tensorrt or cuda-python is not installed, or no GPU is visible
    bundle_runtime.manifest.BundleError   a graph failed to parse or to build
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bundle_runtime.manifest import BundleError

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]


class TensorRtUnavailable(BundleError):
    """TensorRT cannot run here; the message says what to install or which provider to use."""


@dataclass(frozen=True)
class ProfileRange:
    opt_batch: int = 8
    max_batch: int = 64
    opt_length: int = 32
    max_length: int = 513  # positions + 1: the step graph's self mask is one longer than past


def _imports() -> tuple[Any, Any]:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TensorRtUnavailable(
            "serving.provider is tensorrt but the `tensorrt` package is not installed. On a "
            "machine with an NVIDIA GPU: pip install tensorrt cuda-python; otherwise set "
            "CHATDISTILL_SERVING__PROVIDER=cpu (or cuda with onnxruntime-gpu)"
        ) from exc
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[import-not-found]
        except ImportError as exc:
            raise TensorRtUnavailable(
                "TensorRT needs cuda-python for device memory: pip install cuda-python"
            ) from exc
    return trt, cudart


def _check(result: Any) -> Any:
    """cuda-python calls return (error, *values); raise on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise TensorRtUnavailable(f"CUDA call failed with error {err}; is a GPU visible?")
    return values[0] if len(values) == 1 else values


def engine_dir(bundle_dir: Path) -> Path:
    trt, cudart = _imports()
    props = _check(cudart.cudaGetDeviceProperties(0))
    return bundle_dir / "tensorrt" / f"sm{props.major}{props.minor}-trt{trt.__version__}"


def build_engine(onnx_path: Path, out: Path, profile_range: ProfileRange) -> None:
    """ONNX graph -> serialized FP16 engine at `out` (one profile over batch and lengths)."""
    trt, _ = _imports()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    r = profile_range
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        ranges = [
            (size, size, size)
            if size >= 0
            else (1, r.opt_batch, r.max_batch)
            if axis == 0
            else (1, r.opt_length, r.max_length)
            for axis, size in enumerate(tensor.shape)
        ]
        lo, opt, hi = ([rng[k] for rng in ranges] for k in range(3))
        profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine for {onnx_path.name}; see its log")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)


class TrtSession:
    """One engine with the `run(None, feed) -> [outputs]` surface of an ORT session.
    Synchronous: copies inputs to the device, runs on a private stream, copies outputs back."""

    def __init__(self, engine_path: Path) -> None:
        trt, cudart = self._trt, self._cudart = _imports()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BundleError(f"{engine_path} is not a TensorRT engine for this GPU; delete it")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self._engine.get_tensor_mode(n) != mode]

    def run(self, _names: None, feed: dict[str, Array]) -> list[Array]:
        trt, cudart = self._trt, self._cudart
        h2d, d2h = (
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        )
        buffers: list[int] = []
        try:
            for name in self.inputs:
                host = np.ascontiguousarray(
                    feed[name], trt.nptype(self._engine.get_tensor_dtype(name))
                )
                self._context.set_input_shape(name, host.shape)
                ptr = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                buffers.append(ptr)
                _check(
                    cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, self._stream)
                )
                self._context.set_tensor_address(name, ptr)
            results: list[Array] = []
            for name in self.outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                host = np.empty(shape, trt.nptype(self._engine.get_tensor_dtype(name)))
                ptr = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                buffers.append(ptr)
                self._context.set_tensor_address(name, ptr)
                results.append(host)
            if not self._context.execute_async_v3(self._stream):
                raise BundleError("TensorRT execution failed; see the TensorRT log")
            for host, ptr in zip(results, buffers[len(self.inputs) :], strict=True):
                _check(
                    cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self._stream)
                )
            _check(cudart.cudaStreamSynchronize(self._stream))
            return [r.astype(np.float32) if r.dtype == np.float16 else r for r in results]
        finally:
            for ptr in buffers:
                cudart.cudaFree(ptr)


def load_sessions(
    bundle_dir: Path, graphs: dict[str, str], profile_range: ProfileRange | None = None
) -> dict[str, TrtSession]:
    """role -> TrtSession for the bundle's graphs, building (and caching) missing engines."""
    folder = engine_dir(bundle_dir)
    sessions = {}
    for role, name in graphs.items():
        path = folder / f"{Path(name).stem}.engine"
        if not path.exists():
            logger.info("building the TensorRT engine %s (first use on this GPU)", path)
            build_engine(bundle_dir / name, path, profile_range or ProfileRange())
        sessions[role] = TrtSession(path)
    return sessions
