"""handoff inbox: who has each conversation (bot, waiting, agent, resolved), its changes, and
agent messages (the role `operator` becomes `agent`, with the operator who wrote it)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = "'bot', 'waiting', 'agent', 'resolved'"


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="bot")
        )
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("assigned_operator_id", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column("first_agent_reply_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_check_constraint("state", f"state IN ({STATES})")
        batch.create_foreign_key(
            batch.f("fk_conversations_assigned_operator_id_operators"),
            "operators",
            ["assigned_operator_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(batch.f("ix_conversations_state"), ["state"], unique=False)
        batch.create_index(
            batch.f("ix_conversations_assigned_operator_id"), ["assigned_operator_id"], unique=False
        )
    # Conversations already handed off are waiting in the queue.
    op.execute(
        "UPDATE conversations SET state = 'waiting', state_changed_at = handed_off_at "
        "WHERE handed_off"
    )
    with op.batch_alter_table("conversations") as batch:
        batch.alter_column("state", server_default=None)

    op.execute("UPDATE messages SET role = 'agent' WHERE role = 'operator'")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("role", type_="check")
        batch.create_check_constraint(
            "role", "role IN ('customer', 'assistant', 'agent', 'system')"
        )
        batch.add_column(sa.Column("operator_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_messages_operator_id_operators"),
            "operators",
            ["operator_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "conversation_state_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("assigned_operator_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            f"from_state IN ({STATES})", name=op.f("ck_conversation_state_changes_from_state")
        ),
        sa.CheckConstraint(
            f"to_state IN ({STATES})", name=op.f("ck_conversation_state_changes_to_state")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_state_changes_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assigned_operator_id"],
            ["operators.id"],
            name=op.f("fk_conversation_state_changes_assigned_operator_id_operators"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_state_changes")),
    )
    op.create_index(
        op.f("ix_conversation_state_changes_conversation_id"),
        "conversation_state_changes",
        ["conversation_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_conversation_state_changes_at"), "conversation_state_changes", ["at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_conversation_state_changes_at"), table_name="conversation_state_changes")
    op.drop_index(
        op.f("ix_conversation_state_changes_conversation_id"),
        table_name="conversation_state_changes",
    )
    op.drop_table("conversation_state_changes")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint(batch.f("fk_messages_operator_id_operators"), type_="foreignkey")
        batch.drop_column("operator_id")
        batch.drop_constraint("role", type_="check")
    op.execute("UPDATE messages SET role = 'operator' WHERE role = 'agent'")
    with op.batch_alter_table("messages") as batch:
        batch.create_check_constraint(
            "role", "role IN ('customer', 'assistant', 'operator', 'system')"
        )
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index(batch.f("ix_conversations_assigned_operator_id"))
        batch.drop_index(batch.f("ix_conversations_state"))
        batch.drop_constraint(
            batch.f("fk_conversations_assigned_operator_id_operators"), type_="foreignkey"
        )
        batch.drop_constraint("state", type_="check")
        batch.drop_column("first_agent_reply_at")
        batch.drop_column("assigned_operator_id")
        batch.drop_column("state_changed_at")
        batch.drop_column("state")
