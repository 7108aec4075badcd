"""Training-set snapshots: one frozen, content-addressed training set per distillation run.

The examples themselves live as files in the artifact folder (`<snapshots_dir>/<content_hash>/`);
this row says which folder, what went into it (counts, parameters) and up to when feedback was
taken (`feedback_until`), so that the next snapshot takes only what came after. `run_id` is
unique: a run has at most one snapshot (NULLs never collide, so ad-hoc snapshots may share none).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from feedback.models.base import Base, UTCDateTime, utcnow


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (CheckConstraint("length(content_hash) = 64", name="content_hash_is_sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("distill_runs.id", ondelete="SET NULL"), unique=True
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("snapshots.id", ondelete="SET NULL")
    )
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(1000))  # the folder holding train/heldout/report
    feedback_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # fractions and seed used
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)  # train/heldout/new/replay/seed/...
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
