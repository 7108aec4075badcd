"""The rows of `bench/intents.py`: BANKING77, CLINC150 and HWU64 from ../shared/data, each split
once into train, calibration (carved from train) and dev rows, the same for every model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.intent_students import oos_label
from distill_worker.data.building import stratified_split
from distill_worker.data.loaders import Utterance, load_utterances

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DATASETS = ("banking77", "clinc150", "hwu64")
CALIBRATION_SHARE = 0.1


@dataclass(frozen=True)
class DataSet:
    """The three disjoint sets of rows of one data set, and its intents (sorted)."""

    name: str
    train: list[Utterance]
    calibration: list[Utterance]
    dev: list[Utterance]
    labels: list[str]

    @property
    def oos_label(self) -> str | None:
        return oos_label(self.labels)

    @property
    def oos(self) -> int | None:
        """The index of `oos` among the labels; None when the data has no out-of-scope rows."""
        return self.labels.index(self.oos_label) if self.oos_label is not None else None

    def gold(self, rows: list[Utterance]) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[r.intent or ""] for r in rows]

    def rows_note(self) -> str:
        """Which rows each figure comes from, for the report."""

        def count(rows: list[Utterance]) -> str:
            oos = sum(r.intent == self.oos_label for r in rows) if self.oos_label else 0
            return f"{len(rows):,} " + (f"({oos:,} oos) " if self.oos_label else "")

        return (
            f"trained on {count(self.train)}train rows; calibrated on {count(self.calibration)}"
            f"train rows held out; reported on {count(self.dev)}dev rows"
        )


def read_hwu64(folder: Path) -> list[Utterance]:
    """HWU64's `seq.in` (one utterance a line) and `label` (its intent, line-aligned)."""
    texts = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
    intents = (folder / "label").read_text(encoding="utf-8").splitlines()
    if len(texts) != len(intents):
        raise SystemExit(f"{folder}: {len(texts)} utterances but {len(intents)} labels")
    return [
        Utterance(text=text.strip(), intent=intent.strip())
        for text, intent in zip(texts, intents, strict=True)
        if text.strip() and intent.strip()
    ]


def load(name: str, max_train: int | None, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) of a data set; train capped at `max_train` rows (stratified)."""
    if name == "banking77":
        rows = load_utterances(DATA / "banking77" / "train.csv")
        train, dev = stratified_split(rows, 0.1, seed)
    elif name == "clinc150":
        path = DATA / "clinc150" / "data_full.json"
        # The loader adds `oos_<split>` to each split: oos_train to train, oos_val to dev.
        train, dev = load_utterances(path, split="train"), load_utterances(path, split="val")
    elif name == "hwu64":
        train, dev = read_hwu64(DATA / "hwu64" / "train"), read_hwu64(DATA / "hwu64" / "valid")
    else:
        raise SystemExit(f"unknown dataset {name}")
    if max_train is not None and len(train) > max_train:
        train, _ = stratified_split(train, 1 - max_train / len(train), seed)
    return train, dev


def load_dataset(name: str, max_train: int | None, seed: int) -> DataSet:
    """The data set with its calibration rows carved from train, once for every model."""
    train, dev = load(name, max_train, seed)
    train, calibration = stratified_split(train, CALIBRATION_SHARE, seed)
    labels = sorted({r.intent for r in [*train, *calibration, *dev] if r.intent})
    return DataSet(name, train, calibration, dev, labels)
