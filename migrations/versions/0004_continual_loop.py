"""continual loop: monitor evaluations; run steps, delivery and lease

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 16:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISIONS = (
    "none",
    "opened_run",
    "run_active",
    "cooldown",
    "disarmed",
    "disabled",
    "observed",
)


def upgrade() -> None:
    with op.batch_alter_table("distill_runs") as batch:
        batch.add_column(sa.Column("steps", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("task_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_check_constraint(op.f("ck_distill_runs_attempts_nonnegative"), "attempts >= 0")

    op.create_table(
        "monitor_evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=120), nullable=False),
        sa.Column("is_production", sa.Boolean(), nullable=False),
        sa.Column("window_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("breaches", sa.JSON(), nullable=False),
        sa.Column("insufficient", sa.JSON(), nullable=False),
        sa.Column("armed", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "decision IN (" + ", ".join(f"'{d}'" for d in DECISIONS) + ")",
            name=op.f("ck_monitor_evaluations_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["distill_runs.id"],
            name=op.f("fk_monitor_evaluations_run_id_distill_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_evaluations")),
    )
    op.create_index(op.f("ix_monitor_evaluations_at"), "monitor_evaluations", ["at"], unique=False)
    op.create_index(
        op.f("ix_monitor_evaluations_run_id"), "monitor_evaluations", ["run_id"], unique=False
    )
    op.create_index(
        "ix_monitor_evaluations_version_id",
        "monitor_evaluations",
        ["model_version", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_monitor_evaluations_version_id", table_name="monitor_evaluations")
    op.drop_index(op.f("ix_monitor_evaluations_run_id"), table_name="monitor_evaluations")
    op.drop_index(op.f("ix_monitor_evaluations_at"), table_name="monitor_evaluations")
    op.drop_table("monitor_evaluations")
    with op.batch_alter_table("distill_runs") as batch:
        batch.drop_constraint(op.f("ck_distill_runs_attempts_nonnegative"), type_="check")
        batch.drop_column("cancel_requested")
        batch.drop_column("heartbeat_at")
        batch.drop_column("lease_owner")
        batch.drop_column("dispatched_at")
        batch.drop_column("task_id")
        batch.drop_column("attempts")
        batch.drop_column("steps")
