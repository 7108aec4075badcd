"""Migrations on PostgreSQL and SQLite: upgrade -> downgrade -> upgrade, and no drift between
the models and the migrated schema (what `alembic revision --autogenerate` would find)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from feedback import migrate
from feedback.models import Base
from tests.conftest import create_database, drop_database

TABLES = {
    "alembic_version",
    "api_keys",
    "approved_answers",
    "audit_log",
    "conversations",
    "conversation_state_changes",
    "corrections",
    "distill_runs",
    "messages",
    "model_alias_events",
    "model_aliases",
    "model_versions",
    "monitor_evaluations",
    "operator_sessions",
    "operators",
    "ratings",
    "seed_examples",
    "seed_imports",
    "snapshots",
    "teacher_outputs",
}


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        name = f"chatdistill_mig_{uuid.uuid4().hex[:12]}"
        engine = create_engine(create_database(name))
        yield engine
        engine.dispose()
        drop_database(name)
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'mig.db'}")
        yield engine
        engine.dispose()


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade_and_no_drift(fresh_engine: Engine) -> None:
    migrate.upgrade(fresh_engine)
    assert set(inspect(fresh_engine).get_table_names()) == TABLES
    assert migrate.current_revision(fresh_engine) == migrate.head_revision()
    assert _diff(fresh_engine) == []

    migrate.downgrade(fresh_engine, "base")
    assert set(inspect(fresh_engine).get_table_names()) == {"alembic_version"}
    assert migrate.current_revision(fresh_engine) is None

    migrate.upgrade(fresh_engine)
    assert set(inspect(fresh_engine).get_table_names()) == TABLES
    assert _diff(fresh_engine) == []


def test_models_without_migration_are_detected(fresh_engine: Engine) -> None:
    """The drift check itself works: an unmigrated database shows differences."""
    assert _diff(fresh_engine) != []
