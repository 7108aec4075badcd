"""One snapshot example as a JSON line, its dedup key, and reading snapshot files (the build
writes them, `distill_worker.data.snapshots.build`).

A record is one customer turn: its text and bounded earlier turns, an intent label (with where
the label came from), an optional reply (with where it came from and its rating) and an
optional rejected reply. `key` identifies the turn by content (earlier turns + text, case and
whitespace folded), so the same question asked twice, or imported twice, is one example; the
held-out split is decided on keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill_worker.data.loaders import Utterance

# Where a record came from, in the order dedup prefers them (later wins).
ORIGINS = ("seed", "replay", "feedback")
INTENT_SOURCES = ("seed", "predicted", "operator")
REPLY_SOURCES = ("reference", "rated", "agent", "correction")
# Older snapshot files name an agent's (operator's) own reply "operator"; read as "agent".
_OLD_REPLY_SOURCES = {"operator": "agent"}


class SnapshotError(Exception):
    """A snapshot cannot be built or read; the message says what to fix."""


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def example_key(text: str, context: Iterable[tuple[str, str]]) -> str:
    payload = json.dumps([[r, _fold(t)] for r, t in context] + [["customer", _fold(text)]])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SnapshotRecord:
    key: str
    text: str
    context: tuple[tuple[str, str], ...]
    intent: str | None
    intent_source: str | None  # one of INTENT_SOURCES, None when unlabelled
    reply: str | None
    reply_source: str | None  # one of REPLY_SOURCES
    reward: float | None  # rating of `reply`: 1 good, 0 bad, None not rated
    rejected: str | None  # a reply known to be bad (corrected, or superseded by an agent's)
    origin: str  # "feedback" | "seed" (as first taken); "replay" only in counts
    source_id: str  # the customer message id or the seed example id
    corpus: str | None = None  # seed corpus name

    def to_json(self) -> str:
        data = asdict(self)
        data["context"] = [list(turn) for turn in self.context]
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str, where: str) -> SnapshotRecord:
        try:
            data: dict[str, Any] = json.loads(line)
            data["context"] = tuple((str(r), str(t)) for r, t in data["context"])
            source = data.get("reply_source")
            data["reply_source"] = _OLD_REPLY_SOURCES.get(source, source) if source else source
            record = cls(**data)
        except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise SnapshotError(f"{where}: not a snapshot record ({exc})") from exc
        if not record.text or len(record.key) != 64:
            raise SnapshotError(f"{where}: a record needs a text and a 64-hex key")
        return record

    def utterance(self) -> Utterance:
        return Utterance(
            text=self.text,
            intent=self.intent,
            reply=self.reply,
            context=self.context,
            reward=self.reward,
            rejected=self.rejected,
        )


def read_records(path: Path) -> list[SnapshotRecord]:
    if not path.is_file():
        raise SnapshotError(f"{path}: missing; the snapshot folder is incomplete")
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                out.append(SnapshotRecord.from_json(line, f"{path}:{number}"))
    return out
