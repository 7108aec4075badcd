"""Seed corpora: one import row and its examples, added without duplicating stored examples."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from feedback.models import SeedExample, SeedImport
from feedback.redaction import redact_text


@dataclass(frozen=True)
class NewSeedExample:
    """An example as an importer read it; text, context and reply are redacted on the way in."""

    corpus: str
    split: str
    text: str
    context: list[tuple[str, str]]
    intent: str | None
    reply: str | None
    reward: float | None
    meta: dict[str, Any]
    content_hash: str


class SeedRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_import(
        self, *, format: str, source: str, file_sha256: str, examples: Sequence[NewSeedExample]
    ) -> SeedImport:
        """One import: its row plus every example whose content hash is not stored yet.

        Runs inside the caller's transaction: if anything fails, nothing of the import stays.
        """
        record = SeedImport(
            format=format,
            source=source[:500],
            file_sha256=file_sha256,
            rows_read=len(examples),
            rows_added=0,
            rows_duplicate=0,
        )
        self.session.add(record)
        self.session.flush()
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = (
            insert(SeedExample)
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(SeedExample.id)
        )
        unique = list({e.content_hash: e for e in examples}.values())
        rows = [
            {
                "id": uuid.uuid4(),
                "import_id": record.id,
                "corpus": e.corpus,
                "split": e.split,
                "text": redact_text(e.text),
                "context": [[role, redact_text(text)] for role, text in e.context],
                "intent": e.intent,
                "reply": redact_text(e.reply) if e.reply is not None else None,
                "reward": e.reward,
                "meta": e.meta,
                "content_hash": e.content_hash,
            }
            for e in unique
        ]
        # One executemany: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
        # without compiling a statement per batch; RETURNING counts the rows really added.
        added = len(self.session.connection().execute(stmt, rows).all()) if rows else 0
        record.rows_added = added
        record.rows_duplicate = len(examples) - added
        self.session.flush()
        return record

    def count(self, corpus: str | None = None) -> int:
        stmt = select(func.count()).select_from(SeedExample)
        if corpus is not None:
            stmt = stmt.where(SeedExample.corpus == corpus)
        return int(self.session.scalar(stmt) or 0)

    def examples(self, import_id: uuid.UUID) -> Sequence[SeedExample]:
        return self.session.scalars(
            select(SeedExample).where(SeedExample.import_id == import_id)
        ).all()
