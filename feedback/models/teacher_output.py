"""Cached teacher outputs: one row per (teacher id, prompt, parameters), addressed by its hash.

The key is the sha256 of a canonical JSON of what determines the output (see
`distill_worker.teacher.cache.cache_key`); `output` is the teacher's answer as plain JSON (reply
text, token ids, top-k logprobs). Rows are written once and never updated: a changed prompt or
parameter is a new key, so an incremental run asks the teacher only for inputs it has not seen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class TeacherOutput(Base):
    __tablename__ = "teacher_outputs"
    __table_args__ = (CheckConstraint("length(key) = 64", name="key_is_sha256"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    teacher_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # what was asked: "reply+score", ...
    output: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
