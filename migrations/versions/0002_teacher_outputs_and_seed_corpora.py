"""teacher outputs (the teacher cache) and seed corpora (imported data sets)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:56:31.464296
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teacher_outputs",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("teacher_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(key) = 64", name=op.f("ck_teacher_outputs_key_is_sha256")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_teacher_outputs")),
    )
    op.create_index(
        op.f("ix_teacher_outputs_teacher_id"), "teacher_outputs", ["teacher_id"], unique=False
    )
    op.create_table(
        "seed_imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_added", sa.Integer(), nullable=False),
        sa.Column("rows_duplicate", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "rows_added >= 0 AND rows_duplicate >= 0",
            name=op.f("ck_seed_imports_counts_nonnegative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seed_imports")),
    )
    op.create_index(
        op.f("ix_seed_imports_created_at"), "seed_imports", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_seed_imports_file_sha256"), "seed_imports", ["file_sha256"], unique=False
    )
    op.create_table(
        "seed_examples",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("corpus", sa.String(length=40), nullable=False),
        sa.Column("split", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("intent", sa.String(length=120), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "reward IS NULL OR (reward >= 0 AND reward <= 1)",
            name=op.f("ck_seed_examples_reward_range"),
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["seed_imports.id"],
            name=op.f("fk_seed_examples_import_id_seed_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seed_examples")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_seed_examples_content_hash")),
    )
    op.create_index(op.f("ix_seed_examples_corpus"), "seed_examples", ["corpus"], unique=False)
    op.create_index(
        op.f("ix_seed_examples_import_id"), "seed_examples", ["import_id"], unique=False
    )
    op.create_index(op.f("ix_seed_examples_intent"), "seed_examples", ["intent"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_seed_examples_intent"), table_name="seed_examples")
    op.drop_index(op.f("ix_seed_examples_import_id"), table_name="seed_examples")
    op.drop_index(op.f("ix_seed_examples_corpus"), table_name="seed_examples")
    op.drop_table("seed_examples")
    op.drop_index(op.f("ix_seed_imports_file_sha256"), table_name="seed_imports")
    op.drop_index(op.f("ix_seed_imports_created_at"), table_name="seed_imports")
    op.drop_table("seed_imports")
    op.drop_index(op.f("ix_teacher_outputs_teacher_id"), table_name="teacher_outputs")
    op.drop_table("teacher_outputs")
