"""BANKING77: a CSV `text,category`, one labelled customer query per row (e.g. train.csv)."""

from __future__ import annotations

from pathlib import Path

from distill_worker.data.importers.csv_rows import csv_rows
from distill_worker.data.importers.records import SeedRecord, label, required


def read_banking77(path: Path) -> list[SeedRecord]:
    split = path.stem  # train.csv -> "train"
    return [
        SeedRecord(
            text=required(row["text"], where, "text"),
            intent=label(row["category"], where, "category"),
            split=split,
        )
        for where, row in csv_rows(path, ("text", "category"))
    ]
