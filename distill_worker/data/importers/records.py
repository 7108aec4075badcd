"""What every importer produces: `SeedRecord`s, one customer turn each, and the checks they share.

A record is the customer's turn (`text`), the earlier turns of the conversation (`context`,
oldest first, roles `customer` / `assistant`), an optional intent, an optional reply (a reference
answer, or an agent action that was rated) and an optional `reward` in [0, 1] (1 good, 0 bad).

Errors are `DataError`s naming the file and line (JSON files that are one document name the
entry's path, e.g. `train[17]`, since their values have no lines of their own) and what to fix.
Importers read the whole file before anything is stored, so a bad line imports nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from distill_worker.data.loaders import MAX_TEXT_CHARS, DataError

ROLES = ("customer", "assistant")
MAX_LABEL_CHARS = 120  # feedback.models.SeedExample.intent


@dataclass(frozen=True)
class SeedRecord:
    text: str
    context: tuple[tuple[str, str], ...] = ()
    intent: str | None = None
    reply: str | None = None
    reward: float | None = None
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reward is not None and not 0.0 <= self.reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {self.reward}")
        if any(role not in ROLES for role, _ in self.context):
            raise ValueError(f"context roles must be {ROLES}")

    def content_hash(self) -> str:
        """sha256 of what makes two examples the same (not where they came from)."""
        key = [self.text, [list(t) for t in self.context], self.intent, self.reply, self.reward]
        canonical = json.dumps(key, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_jsonl(self) -> dict[str, Any]:
        """The line `distill --data file.jsonl` reads (extra keys are kept for reference)."""
        line: dict[str, Any] = {"text": self.text}
        if self.context:
            line["context"] = [{"role": r, "text": t} for r, t in self.context]
        for key in ("intent", "reply", "reward"):
            value = getattr(self, key)
            if value is not None:
                line[key] = value
        line["split"] = self.split
        return line


def clean(value: Any, where: str, what: str, *, required: bool) -> str | None:
    """Whitespace-normalised text, or None when empty and optional; DataError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(f"{where}: empty {what}; every row needs one")
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise DataError(f"{where}: {what} contains a NUL character; remove it")
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_TEXT_CHARS:
        raise DataError(f"{where}: {what} is longer than {MAX_TEXT_CHARS} characters; shorten it")
    return cleaned


def required(value: Any, where: str, what: str) -> str:
    text = clean(value, where, what, required=True)
    assert text is not None
    return text


def label(value: Any, where: str, what: str) -> str:
    """A required intent label, at most MAX_LABEL_CHARS (the store's column) long."""
    text = required(value, where, what)
    if len(text) > MAX_LABEL_CHARS:
        raise DataError(f"{where}: {what} is longer than {MAX_LABEL_CHARS} characters")
    return text


def json_line(line: str, where: str) -> dict[str, Any]:
    """One JSON-lines line as an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: each line must be a JSON object")
    return obj


def json_document(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:{exc.lineno}: not valid JSON ({exc.msg})") from None
