"""Sync endpoints end their store transaction in their own thread (chat_api.routing): a read
or a write left open would otherwise wait for a free thread, holding SQLite's write lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from chat_api.routing import ending_transactions
from feedback.db import make_engine, make_session_factory
from feedback.settings import Settings


def test_a_sync_endpoint_leaves_no_transaction_open(tmp_path: Path) -> None:
    engine = make_engine(
        Settings(data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 's.db'}"})
    )
    factory = make_session_factory(engine)
    try:
        with factory() as setup:
            setup.execute(text("CREATE TABLE t (v INTEGER)"))
            setup.commit()

        @ending_transactions
        def writes(session: Session) -> int:
            session.execute(text("INSERT INTO t VALUES (1)"))
            return 1

        @ending_transactions
        def fails(session: Session) -> None:
            session.execute(text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("boom")

        session = factory()
        assert writes(session=session) == 1
        assert not session.in_transaction()  # committed in this thread, lock released
        with pytest.raises(RuntimeError):
            fails(session=session)
        assert not session.in_transaction()  # rolled back in this thread
        # A second connection can take the write lock at once, and sees only the committed row.
        with factory() as other:
            assert other.execute(text("SELECT v FROM t")).scalars().all() == [1]
        session.close()
    finally:
        engine.dispose()
