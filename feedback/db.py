"""Engines and sessions.

`make_engine(settings)` builds the engine for the configured database; `session_scope` is the one
place outside the web request dependency where a unit of work commits (CLI commands, workers).
Repositories never commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from feedback.settings import Settings


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    # hide_parameters: a failing statement's error and log line never carry its values (they
    # may hold what a customer typed before redaction finished, or secrets).
    kwargs: dict[str, Any] = {
        "echo": settings.database.echo,
        "future": True,
        "hide_parameters": True,
    }
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_size"] = settings.database.pool_size
        kwargs["max_overflow"] = settings.database.max_overflow
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        path = engine.url.database
        if path and path != ":memory:":
            # The store holds conversations: readable by its owner only (with its WAL files).
            with engine.connect():
                pass
            for name in (path, f"{path}-wal", f"{path}-shm"):
                if os.path.exists(name):
                    os.chmod(name, 0o600)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off: `_sqlite_begin` starts every transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Every SQLite transaction takes the write lock when it starts (BEGIN IMMEDIATE), waiting
    up to the busy timeout for it. A deferred transaction that read first and writes later
    fails at once with "database is locked" when another writer committed in between (WAL
    snapshots cannot be upgraded); waiting a few milliseconds for the lock instead keeps
    concurrent customers from getting errors. Transactions are short (no transaction spans
    model work), so the lock is held briefly; readers outside transactions are not blocked."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
