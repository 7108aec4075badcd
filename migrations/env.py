"""Alembic environment: target metadata from feedback's models, URL from the platform settings.

`chatdistill db upgrade` passes a ready connection (config attribute `connection`); the plain
`alembic` command falls back to `Settings()` from the environment.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from feedback.db import make_engine
from feedback.models import Base
from feedback.settings import Settings

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(Settings())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run `chatdistill db upgrade`")
run_migrations_online()
