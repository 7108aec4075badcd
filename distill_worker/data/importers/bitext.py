"""Bitext customer support: a CSV with `instruction`, `intent`, `category` and `response`
(the reply an agent gives; templated placeholders such as `{{Order Number}}` are kept)."""

from __future__ import annotations

from pathlib import Path

from distill_worker.data.importers.csv_rows import csv_rows
from distill_worker.data.importers.records import SeedRecord, clean, label, required


def read_bitext(path: Path) -> list[SeedRecord]:
    records = []
    for where, row in csv_rows(path, ("instruction", "intent", "response")):
        category = clean(row.get("category"), where, "category", required=False)
        flags = clean(row.get("flags") or row.get("tags"), where, "flags", required=False)
        meta = {k: v for k, v in (("category", category), ("flags", flags)) if v}
        records.append(
            SeedRecord(
                text=required(row["instruction"], where, "instruction"),
                intent=label(row["intent"], where, "intent"),
                reply=required(row["response"], where, "response"),
                meta=meta,
            )
        )
    return records
