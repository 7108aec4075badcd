"""Runner choices: INT8 by default when the bundle has it, FP32 otherwise; the CUDA and TensorRT
providers say clearly what is missing here; TensorRT is imported only when asked for; the CUDA
FP16 path itself runs only where a GPU is (marked gpu)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from pydantic import ValidationError

from bundle_runtime.manifest import BundleError
from bundle_runtime.onnx_student import OnnxStudent
from chat_api.runtime.serving import ReplyEngine, ServingOptions
from feedback.settings import Settings
from tests.fixtures.tiny_bundle import TinyBundle

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def without_int8(bundle: Path, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(bundle, tmp_path / "fp32-only"))
    manifest = json.loads((copy / "manifest.json").read_text())
    for name in manifest["graphs"].pop("int8").values():
        manifest["files"].pop(name)
        (copy / name).unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_auto_serves_int8_when_the_bundle_has_it(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    engine = ReplyEngine(ServingOptions())
    assert engine.load(tiny_bundle.path, "v").student.precision == "int8"
    fp32_only = without_int8(tiny_bundle.path, tmp_path)
    assert engine.load(fp32_only, "w").student.precision == "fp32"
    with pytest.raises(BundleError, match="has no int8 graphs"):
        OnnxStudent(fp32_only, precision="int8")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available: the error path does not apply")
def test_cuda_without_onnxruntime_gpu_says_what_to_install(tiny_bundle: TinyBundle) -> None:
    with pytest.raises(BundleError, match="onnxruntime-gpu") as refused:
        OnnxStudent(tiny_bundle.path, provider="cuda")
    assert "CHATDISTILL_SERVING__PROVIDER=cpu" in str(refused.value)


def test_tensorrt_missing_says_what_to_install(tiny_bundle: TinyBundle) -> None:
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    from bundle_runtime.tensorrt import TensorRtUnavailable

    with pytest.raises(TensorRtUnavailable, match="pip install tensorrt"):
        OnnxStudent(tiny_bundle.path, provider="tensorrt")


def test_serving_imports_tensorrt_only_on_request(tiny_bundle: TinyBundle) -> None:
    script = (
        "import sys; from pathlib import Path; import chat_api.app;"
        "from bundle_runtime.onnx_student import OnnxStudent;"
        f"OnnxStudent(Path({str(tiny_bundle.path)!r})).reply([('customer', 'hi')]);"
        "bad = sorted(m for m in sys.modules if m == 'bundle_runtime.tensorrt'"
        " or m.split('.')[0] in ('tensorrt', 'torch'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_replies_match_the_cpu_replies(tiny_bundle: TinyBundle) -> None:
    cpu = OnnxStudent(tiny_bundle.path, precision="fp32")
    gpu = OnnxStudent(tiny_bundle.path, precision="fp32", provider="cuda")
    prompts = [[("customer", s.split(": ", 1)[1])] for s in tiny_bundle.sources]
    assert [r.text for r in gpu.reply_batch(prompts)] == [r.text for r in cpu.reply_batch(prompts)]


def test_the_handoff_override_comes_from_the_settings_with_its_score(
    tiny_bundle: TinyBundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHATDISTILL_SERVING__HANDOFF_THRESHOLD", "2.5")
    with pytest.raises(ValidationError, match="probability with the max-softmax score"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("CHATDISTILL_SERVING__HANDOFF_SCORE", "energy")
    serving = Settings(data_dir=tmp_path).serving
    options = ServingOptions(
        handoff_threshold=serving.handoff_threshold, handoff_score=serving.handoff_score
    )
    student = ReplyEngine(options).load(tiny_bundle.path, "v").student
    assert (student.handoff_score, student.handoff_threshold) == ("energy", 2.5)
    with pytest.raises(ValueError, match="not a probability"):
        ServingOptions(handoff_threshold=2.5)
