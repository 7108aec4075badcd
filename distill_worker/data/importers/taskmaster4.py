"""Taskmaster-4 rated agent actions (`raw/reward/*.json`): lists of
`{"conversation_id", "context": "<JSON list of turns>", "generation": "<JSON turn>", "reward"}`.

A turn is `{"role": "user"|"agent", "text"}`, an agent's API call `{"role": "agent", "api":
{name: args}}` or its result `{"role": "api", "response": {...}}`. Each entry becomes a record:
the last user text is the customer's turn, the turns before it the context, the generation the
reply, rated 1 (good) or 0 (bad). API calls and results are written as the agent's turns
(`[api] name {args}`, `[api result] {...}` cut to 300 characters), so a reward model sees what the
agent did; those the agent took after the customer's last turn (before the rated action) are kept
in order in `meta["steps_since_user"]`, since the context holds only turns before the customer's.
An entry whose context has no user turn yet (6 in the public files: the agent speaks first) has
no customer turn to answer and is skipped. PATH is one reward file or a folder of them (read in
name order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill_worker.data.importers.records import SeedRecord, json_document, required
from distill_worker.data.loaders import DataError

RESULT_CHARS = 300


def read_taskmaster4(path: Path) -> list[SeedRecord]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no *.json reward files in this folder")
    records: list[SeedRecord] = []
    for file in files:
        entries = json_document(file.read_text(encoding="utf-8"), str(file))
        if not isinstance(entries, list):
            raise DataError(f"{file}: expected a list of rated agent actions")
        for i, entry in enumerate(entries):
            record = _entry(entry, f"{file}: entry [{i}]", file.stem)
            if record is not None:
                records.append(record)
    return records


def _entry(entry: Any, where: str, split: str) -> SeedRecord | None:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with context, generation and reward")
    reward = entry.get("reward")
    if not isinstance(reward, int | float) or isinstance(reward, bool) or reward not in (0, 1):
        raise DataError(f"{where}: reward must be 0 or 1, got {reward!r:.40}")
    context = _embedded(entry.get("context"), f"{where} context", list)
    turns = [_turn(t, f"{where} context[{n}]") for n, t in enumerate(context)]
    reply = _turn(_embedded(entry.get("generation"), f"{where} generation", dict), where)
    last_user = max((n for n, (role, _) in enumerate(turns) if role == "customer"), default=None)
    if last_user is None:
        return None  # the agent speaks first: there is no customer turn to answer yet
    kind = "api" if reply[1].startswith("[api]") else "text"
    return SeedRecord(
        text=turns[last_user][1],
        context=tuple(turns[:last_user]),
        reply=reply[1],
        reward=float(reward),
        split=split,
        meta={
            "conversation_id": entry.get("conversation_id"),
            "action": kind,
            "steps_since_user": [text for _, text in turns[last_user + 1 :]],
        },
    )


def _embedded(value: Any, where: str, kind: type) -> Any:
    """A JSON document stored as a string inside the file."""
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a JSON string")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(parsed, kind):
        raise DataError(f"{where}: expected a JSON {kind.__name__}")
    return parsed


def _turn(turn: Any, where: str) -> tuple[str, str]:
    role = turn.get("role") if isinstance(turn, dict) else None
    if role == "user":
        return "customer", required(turn.get("text"), where, "text")
    if role == "agent" and "api" in turn:
        return "assistant", "[api] " + _compact(turn["api"])
    if role == "agent":
        return "assistant", required(turn.get("text"), where, "text")
    if role == "api":
        return "assistant", "[api result] " + _compact(turn.get("response"))[:RESULT_CHARS]
    raise DataError(f"{where}: role must be 'user', 'agent' or 'api', got {role!r:.40}")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
