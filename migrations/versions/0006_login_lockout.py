"""login lockout: consecutive wrong passwords and the lock's end on each operator

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(
            op.f("ck_operators_failed_logins_nonnegative"), "failed_logins >= 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.drop_constraint(op.f("ck_operators_failed_logins_nonnegative"), type_="check")
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
