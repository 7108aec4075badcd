"""Importers for public customer-service data formats, so a new user can seed the platform with
their own files in the same shapes (`chatdistill import FORMAT PATH`).

One module per format, each a function PATH -> list[SeedRecord] that reads the whole file and
raises a line-numbered `DataError` on the first bad row (so nothing partial is ever stored).
`store.import_into_store` writes the records into the feedback store in one transaction;
`store.write_jsonl` writes them as the JSON lines `chatdistill distill --data` reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from distill_worker.data.importers.banking77 import read_banking77
from distill_worker.data.importers.bitext import read_bitext
from distill_worker.data.importers.clinc150 import read_clinc150
from distill_worker.data.importers.hwu64 import read_hwu64
from distill_worker.data.importers.records import SeedRecord
from distill_worker.data.importers.star import read_star
from distill_worker.data.importers.taskmaster4 import read_taskmaster4

FORMATS: dict[str, Callable[[Path], list[SeedRecord]]] = {
    "banking77": read_banking77,  # CSV text,category
    "clinc150": read_clinc150,  # data_full.json: {split: [[text, label]]}
    "hwu64": read_hwu64,  # a folder with seq.in + label
    "bitext": read_bitext,  # CSV instruction,intent,category,response
    "star": read_star,  # dialogues.jsonl
    "taskmaster4": read_taskmaster4,  # raw/reward/*.json (a file or the folder)
}

__all__ = ["FORMATS", "SeedRecord"]
