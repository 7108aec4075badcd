"""reply guard: approved answers per intent; the source and guard reason of each reply

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approved_answers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("intent", sa.String(length=120), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("operator_id", sa.Uuid(), nullable=True),
        sa.Column("model_version", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('operator', 'seed')", name=op.f("ck_approved_answers_source")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_approved_answers_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_approved_answers_operator_id_operators"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approved_answers")),
        sa.UniqueConstraint("intent", name=op.f("uq_approved_answers_intent")),
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reply_source", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("guard_reason", sa.String(length=40), nullable=True))
        batch.create_check_constraint(
            "reply_source",
            "reply_source IS NULL OR reply_source IN ('generated', 'approved', 'handoff')",
        )
        batch.create_index(batch.f("ix_messages_reply_source"), ["reply_source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index(batch.f("ix_messages_reply_source"))
        batch.drop_constraint("reply_source", type_="check")
        batch.drop_column("guard_reason")
        batch.drop_column("reply_source")
    op.drop_table("approved_answers")
