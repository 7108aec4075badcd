"""The teachers on a device: `chatdistill teacher prepare --device`, and the encoder teacher
(a tiny BERT, as in test_early_stopping.py) fine-tuned on a GPU in mixed precision with its
results on the CPU. The CPU paths themselves are test_teachers_real.py's and
test_early_stopping.py's, unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch", reason="the teachers need the `train` extra (torch)")
pytest.importorskip("transformers", reason="the encoder teacher is a BertModel")

from chat_api.cli import main  # noqa: E402
from distill_worker.devices import Precision  # noqa: E402
from distill_worker.teacher.encoder import EncoderTeacher  # noqa: E402
from tests.fixtures.tiny_teacher import INTENTS, TEXTS, tiny_teacher  # noqa: E402


@pytest.mark.parametrize(
    ("setting", "message"), [("gpu", "use auto, cpu, cuda or cuda:N"), ("cuda:0", "no CUDA GPU")]
)
def test_teacher_prepare_refuses_a_device_it_cannot_use(
    setting: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if setting.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("CHATDISTILL_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "responder"
    result = CliRunner().invoke(
        main, ["teacher", "prepare", "--out", str(out), "--device", setting]
    )
    assert result.exit_code == 2, result.output
    assert "--device" in result.output and message in result.output
    assert not out.exists() and not (tmp_path / "data").exists()  # refused before any work


def test_the_encoder_teacher_defaults_to_the_cpu_in_fp32() -> None:
    teacher = tiny_teacher()
    assert teacher.device == torch.device("cpu") and teacher.precision == Precision("cpu")
    assert {p.device.type for p in teacher.backbone.parameters()} == {"cpu"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_encoder_teacher_fine_tunes_on_a_gpu_and_answers_on_the_cpu(tmp_path: Path) -> None:
    cpu, seeded = tiny_teacher(), tiny_teacher()  # the same weights
    gpu = EncoderTeacher(seeded.backbone, seeded.tokenizer, threads=1, device="cuda")
    assert gpu.precision.dtype in (torch.bfloat16, torch.float16)
    features = gpu.features(TEXTS)
    assert features.device.type == "cpu" and features.dtype is torch.float32
    assert torch.allclose(features, cpu.features(TEXTS), atol=1e-4)  # fp32 inference

    report = gpu.finetune(TEXTS, INTENTS, epochs=6, lr=1e-3, head_lr=1e-2, batch_size=8)
    assert report["epochs_run"] == 6 and report["epochs"][-1]["acc"] == 1.0, report
    assert report["epochs"][-1]["loss"] < 0.75 * report["epochs"][0]["loss"], report  # CPU: 0.56
    assert gpu.head is not None and gpu.head.weight.device.type == "cuda"
    logits = gpu.intent_logits(TEXTS)
    assert logits.device.type == "cpu" and logits.dtype is torch.float32
    index = {name: i for i, name in enumerate(gpu.labels)}
    gold = torch.tensor([index[i] for i in INTENTS])
    assert float((logits.argmax(-1) == gold).float().mean()) >= 0.9  # CPU fp32: all 24

    saved = gpu.save(tmp_path / "teacher")  # CPU tensors: loads anywhere
    on_cpu = EncoderTeacher.load(saved, threads=1)
    assert on_cpu.device.type == "cpu"
    assert torch.allclose(on_cpu.intent_logits(TEXTS), logits, atol=1e-3)
    again = EncoderTeacher.load(saved, threads=1, device="cuda")
    assert again.head is not None and again.head.weight.device.type == "cuda"
    assert torch.allclose(again.intent_logits(TEXTS), logits, atol=1e-4)
