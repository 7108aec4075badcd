"""Reading labelled customer-service files into one shape, with line-numbered errors.

Formats (chosen by extension and content):

* CSV with a header: a text column (`text`, `utterance`, `instruction`) and an intent column
  (`category`, `intent`, `label`), optionally a `reply`/`response` column. BANKING77's
  `train.csv` (`text,category`) is one such file.
* CLINC150's JSON (`data_full.json`): an object of splits, each a list of `[text, label]`; the
  out-of-scope label is `oos`. `split="train"` reads `train` + `oos_train`, `"val"` reads `val` +
  `oos_val`, `"test"` reads `test` + `oos_test` when present.
* JSON lines: one object per line with `text`, optional `intent`, `reply` and `context` (a list of
  `{"role": "customer"|"assistant", "text": ...}` earlier turns).

A file with any bad row is refused whole: nothing partial is returned.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_COLUMNS = ("text", "utterance", "instruction", "query")
INTENT_COLUMNS = ("intent", "category", "label")
REPLY_COLUMNS = ("reply", "response", "answer")
MAX_TEXT_CHARS = 5000


class DataError(Exception):
    """A data file cannot be read; the message names the file and line and what to fix."""


@dataclass(frozen=True)
class Utterance:
    text: str
    intent: str | None = None
    reply: str | None = None
    context: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # earlier (role, text)
    # How customers rated `reply`: 1 good, 0 bad, None not rated (a reference reply).
    reward: float | None = None
    # A reply known to be bad for this turn (one an operator corrected): a reward-head negative.
    rejected: str | None = None

    def turns(self) -> list[tuple[str, str]]:
        return [*self.context, ("customer", self.text)]


def load_utterances(path: Path, *, split: str = "train") -> list[Utterance]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".jsonl":
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = _read_clinc(path, split)
    else:
        raise DataError(
            f"{path}: unknown format; use .csv (text,category), .json (CLINC150) or .jsonl"
        )
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _clean(text: Any, where: str, what: str, *, required: bool) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        if required:
            raise DataError(f"{where}: empty {what}")
        return None
    if not isinstance(text, str):
        raise DataError(f"{where}: {what} must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if len(cleaned) > MAX_TEXT_CHARS:
        raise DataError(f"{where}: {what} is longer than {MAX_TEXT_CHARS} characters")
    return cleaned


def _pick(header: Sequence[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    return next((lowered[n] for n in names if n in lowered), None)


def _read_csv(path: Path) -> list[Utterance]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        text_col = _pick(header, TEXT_COLUMNS)
        if text_col is None:
            raise DataError(f"{path}:1: no text column; name one of {', '.join(TEXT_COLUMNS)}")
        intent_col = _pick(header, INTENT_COLUMNS)
        reply_col = _pick(header, REPLY_COLUMNS)
        rows = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise DataError(f"{where}: more fields than the header has")
            text = _clean(row.get(text_col), where, "text", required=True)
            assert text is not None
            intent = (
                _clean(row.get(intent_col), where, "intent", required=False) if intent_col else None
            )
            reply = (
                _clean(row.get(reply_col), where, "reply", required=False) if reply_col else None
            )
            rows.append(Utterance(text=text, intent=intent, reply=reply))
    return rows


def _read_jsonl(path: Path) -> list[Utterance]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: each line must be a JSON object")
            text = _clean(obj.get("text"), where, "text", required=True)
            assert text is not None
            context = []
            for i, turn in enumerate(obj.get("context") or []):
                if not isinstance(turn, dict) or turn.get("role") not in ("customer", "assistant"):
                    shape = "{'role': 'customer'|'assistant', 'text': ...}"
                    raise DataError(f"{where}: context[{i}] must be {shape}")
                turn_text = _clean(turn.get("text"), where, f"context[{i}].text", required=True)
                assert turn_text is not None
                context.append((str(turn["role"]), turn_text))
            rows.append(
                Utterance(
                    text=text,
                    intent=_clean(obj.get("intent"), where, "intent", required=False),
                    reply=_clean(obj.get("reply"), where, "reply", required=False),
                    context=tuple(context),
                )
            )
    return rows


def _read_clinc(path: Path, split: str) -> list[Utterance]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or split not in data:
        available = ", ".join(sorted(data)) if isinstance(data, dict) else "none"
        raise DataError(f"{path}: no split {split!r} (splits: {available})")
    rows = []
    for name in (split, f"oos_{split}"):
        for i, item in enumerate(data.get(name, [])):
            where = f"{path}: {name}[{i}]"
            if not (isinstance(item, list) and len(item) == 2):
                raise DataError(f"{where}: expected [text, label]")
            text = _clean(item[0], where, "text", required=True)
            intent = _clean(item[1], where, "label", required=True)
            assert text is not None
            rows.append(Utterance(text=text, intent=intent))
    return rows
