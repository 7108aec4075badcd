"""Seed corpora: labelled utterances, reference replies and rated replies imported from files.

Seed data is kept apart from `conversations`/`messages`: those are the live traffic that the
monitor's rolling accuracy, handoff rate and latency are computed on, and that operators review in
the dashboard; thousands of imported public utterances there would skew every window and bury
real conversations. Snapshots read both: new feedback from the live tables, seed corpora from
here.

`SeedImport` is one run of `chatdistill import` (format, file, its sha256, counts); its
`SeedExample` rows hold one customer turn each, with the earlier turns as `context`, an optional
intent, an optional reply (a reference or a rated agent reply) and an optional reward in [0, 1].
`content_hash` makes an example unique across imports, so importing the same file again adds
nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class SeedImport(Base):
    __tablename__ = "seed_imports"
    __table_args__ = (
        CheckConstraint("rows_added >= 0 AND rows_duplicate >= 0", name="counts_nonnegative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    format: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(500))  # the file or folder imported
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    rows_read: Mapped[int] = mapped_column(Integer)
    rows_added: Mapped[int] = mapped_column(Integer)
    rows_duplicate: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SeedExample(Base):
    __tablename__ = "seed_examples"
    __table_args__ = (
        CheckConstraint("reward IS NULL OR (reward >= 0 AND reward <= 1)", name="reward_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("seed_imports.id", ondelete="CASCADE"), index=True
    )
    corpus: Mapped[str] = mapped_column(String(40), index=True)  # the format it came from
    split: Mapped[str] = mapped_column(String(40))  # the source's own split: train, valid, ...
    text: Mapped[str] = mapped_column(Text)  # the customer's turn, PII-redacted
    context: Mapped[list[Any]] = mapped_column(JSON)  # earlier [role, text] turns, oldest first
    intent: Mapped[str | None] = mapped_column(String(120), index=True)
    reply: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)  # 1 good, 0 bad; None: not rated
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
