"""Teacher outputs by content hash: read many at once, add many without overwriting."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedback.models import TeacherOutput, utcnow

# Bound parameters per statement stay well under SQLite's and psycopg's limits.
_CHUNK = 500


@dataclass(frozen=True)
class NewTeacherOutput:
    key: str  # sha256 hex of (teacher id, prompt, parameters)
    teacher_id: str
    kind: str
    output: dict[str, Any]


class TeacherOutputRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored outputs of those keys that are present (absent keys are simply missing)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = self.session.execute(
                select(TeacherOutput.key, TeacherOutput.output).where(TeacherOutput.key.in_(chunk))
            )
            found.update({key: output for key, output in rows})
        return found

    def add_many(self, outputs: Sequence[NewTeacherOutput]) -> int:
        """Insert the outputs whose key is not stored yet; returns how many were new.

        A key written concurrently by another worker is kept as it is (same key, same inputs:
        the first answer stands), not an error.
        """
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = utcnow()
        added = 0
        for start in range(0, len(outputs), _CHUNK):
            chunk = outputs[start : start + _CHUNK]
            stmt = (
                insert(TeacherOutput)
                .values(
                    [
                        {
                            "key": o.key,
                            "teacher_id": o.teacher_id,
                            "kind": o.kind,
                            "output": o.output,
                            "created_at": now,
                        }
                        for o in chunk
                    ]
                )
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(TeacherOutput.key)
            )
            added += len(self.session.execute(stmt).all())
        self.session.flush()
        return added

    def count(self, teacher_id: str | None = None) -> int:
        stmt = select(func.count()).select_from(TeacherOutput)
        if teacher_id is not None:
            stmt = stmt.where(TeacherOutput.teacher_id == teacher_id)
        return int(self.session.scalar(stmt) or 0)
