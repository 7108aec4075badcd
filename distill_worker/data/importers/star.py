"""STAR: wizard-of-oz task dialogues as JSON lines, one dialogue per line.

Each agent turn with text that answers a user turn becomes a record: the last user turn before
it is the customer's text, the turns before that are the context, the agent's text is the reply.
`api` turns (the wizard's database queries) are not shown to the customer and are left out; an
agent turn that follows another agent turn without the user speaking is skipped (its reply would
be taken out of the exchange it belongs to). The intent is the dialogue's task when it has one
(e.g. `bank_fraud_report`). The reward is the user's satisfaction: 1 when every answer of
`user_questionnaire` is yes, 0 when any is no; the same for every reply of the dialogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill_worker.data.importers.records import SeedRecord, json_line, required
from distill_worker.data.loaders import DataError

SPEAKERS = {"user": "customer", "agent": "assistant"}


def read_star(path: Path) -> list[SeedRecord]:
    records: list[SeedRecord] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                records.extend(_dialogue(json_line(line, f"{path}:{number}"), f"{path}:{number}"))
    return records


def _dialogue(obj: dict[str, Any], where: str) -> list[SeedRecord]:
    turns = obj.get("turns")
    if not isinstance(turns, list):
        raise DataError(f"{where}: a dialogue needs a 'turns' list")
    spoken: list[tuple[str, str, str | None]] = []  # (role, text, action label)
    for i, turn in enumerate(turns):
        speaker = turn.get("speaker") if isinstance(turn, dict) else None
        if speaker not in ("user", "agent", "api"):
            raise DataError(f"{where}: turns[{i}] needs speaker 'user', 'agent' or 'api'")
        if speaker != "api":
            text = required(turn.get("text"), f"{where}: turns[{i}]", "text")
            action = turn.get("action_label")
            spoken.append((SPEAKERS[speaker], text, action if isinstance(action, str) else None))
    tasks = obj.get("tasks")
    intent = tasks[0] if isinstance(tasks, list) and len(tasks) == 1 else None
    reward = _satisfaction(obj.get("user_questionnaire"), where)
    records = []
    for i, (role, text, action) in enumerate(spoken):
        if role != "assistant" or i == 0 or spoken[i - 1][0] != "customer":
            continue
        meta: dict[str, Any] = {"dialogue_id": obj.get("dialogue_id")}
        if action:
            meta["action_label"] = action
        records.append(
            SeedRecord(
                text=spoken[i - 1][1],
                context=tuple((r, t) for r, t, _ in spoken[: i - 1]),
                intent=intent if isinstance(intent, str) else None,
                reply=text,
                reward=reward,
                meta=meta,
            )
        )
    return records


def _satisfaction(answers: Any, where: str) -> float | None:
    if answers is None:
        return None
    if not isinstance(answers, list) or not all(
        isinstance(a, dict) and isinstance(a.get("Answer"), bool) for a in answers
    ):
        raise DataError(f"{where}: user_questionnaire must be a list of {{'Answer': true|false}}")
    if not answers:
        return None
    return 1.0 if all(a["Answer"] for a in answers) else 0.0
