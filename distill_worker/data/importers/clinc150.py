"""CLINC150 (`data_full.json`): an object of splits, each a list of `[text, label]`; every split
in the file is imported (train, val, oos_train, ...), the out-of-scope label is `oos`."""

from __future__ import annotations

from pathlib import Path

from distill_worker.data.importers.records import SeedRecord, json_document, label, required
from distill_worker.data.loaders import DataError


def read_clinc150(path: Path) -> list[SeedRecord]:
    data = json_document(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected an object of splits, e.g. {{'train': [[text, label]]}}")
    records: list[SeedRecord] = []
    for split, items in data.items():
        if not isinstance(items, list):
            raise DataError(f"{path}: split {split!r} must be a list of [text, label]")
        for i, item in enumerate(items):
            where = f"{path}: {split}[{i}]"
            if not (isinstance(item, list) and len(item) == 2):
                raise DataError(f"{where}: expected [text, label], got {item!r:.80}")
            records.append(
                SeedRecord(
                    text=required(item[0], where, "text"),
                    intent=label(item[1], where, "label"),
                    split=split,
                )
            )
    return records
