"""Shared fixtures: a real PostgreSQL database per test worker (migrations applied), each test
inside a transaction that is rolled back; real Redis on loopback with a key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from feedback import migrate
from feedback.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "CHATDISTILL_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CHATDISTILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET = "test-secret-key-0123456789abcdef"

# Fixtures and builders shared by test modules live in tests/fixtures/ (no test module imports
# another); their asserts are rewritten like a test's, and the modules defining pytest fixtures
# are plugins (tiny_bundle first: hot_swap imports it).
pytest.register_assert_rewrite("tests.fixtures")
pytest_plugins = ["tests.fixtures.tiny_bundle", "tests.fixtures.cli", "tests.fixtures.hot_swap"]


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def worker_id_str(request: pytest.FixtureRequest) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def create_database(name: str) -> str:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return _pg_url(name)


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url(worker_id_str: str) -> Iterator[str]:
    """A database for this test worker (and this run: parallel runs must not share), migrated."""
    name = f"chatdistill_test_{worker_id_str}_{os.getpid()}"
    url = create_database(name)
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(pg_engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test."""
    with pg_engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        finally:
            trans.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions on the test's connection; their commits only release savepoints."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"chatdistill-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database={"url": pg_url},
        auth={"secret_key": TEST_SECRET},
    )


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings, session_factory=session_factory)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def steady_minute() -> None:
    """Rate limits count per fixed minute: start a counting test well inside one, so that a
    window boundary cannot reset the counter half-way (it would pass requests the test expects
    to be refused)."""
    import time

    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.2)
