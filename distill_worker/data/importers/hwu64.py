"""HWU64: a folder with `seq.in` (one utterance per line) and `label` (its intent, same line)."""

from __future__ import annotations

from pathlib import Path

from distill_worker.data.importers.records import SeedRecord, label, required
from distill_worker.data.loaders import DataError


def read_hwu64(path: Path) -> list[SeedRecord]:
    if not path.is_dir():
        raise DataError(f"{path}: give the folder that holds seq.in and label (e.g. hwu64/train)")
    texts_path, labels_path = path / "seq.in", path / "label"
    for needed in (texts_path, labels_path):
        if not needed.is_file():
            raise DataError(f"{needed}: missing; an HWU64 folder has seq.in and label")
    texts = texts_path.read_text(encoding="utf-8").splitlines()
    labels = labels_path.read_text(encoding="utf-8").splitlines()
    if len(texts) != len(labels):
        raise DataError(
            f"{path}: seq.in has {len(texts)} lines and label has {len(labels)}; "
            "they must pair up line by line"
        )
    return [
        SeedRecord(
            text=required(text, f"{texts_path}:{n}", "utterance"),
            intent=label(intent, f"{labels_path}:{n}", "label"),
            split=path.name,
        )
        for n, (text, intent) in enumerate(zip(texts, labels, strict=True), start=1)
    ]
