"""training-set snapshots

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("feedback_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "length(content_hash) = 64", name=op.f("ck_snapshots_content_hash_is_sha256")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshots_parent_id_snapshots"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["distill_runs.id"],
            name=op.f("fk_snapshots_run_id_distill_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("run_id", name=op.f("uq_snapshots_run_id")),
    )
    op.create_index(op.f("ix_snapshots_content_hash"), "snapshots", ["content_hash"], unique=False)
    op.create_index(op.f("ix_snapshots_created_at"), "snapshots", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_snapshots_created_at"), table_name="snapshots")
    op.drop_index(op.f("ix_snapshots_content_hash"), table_name="snapshots")
    op.drop_table("snapshots")
