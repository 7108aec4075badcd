"""The dashboard's chart request costs a fixed number of statements, whatever its bucket count
(it was nine per bucket: 870 for 96 buckets)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from tests.fixtures.operators import (
    add_assistant_reply,
    add_customer_message,
    make_conversation,
    operator_headers,
)

BASE = dt.datetime(2004, 1, 1, tzinfo=dt.UTC)


def test_series_statements_do_not_grow_with_the_buckets(
    client: TestClient, db: Session, connection: Connection
) -> None:
    _, headers = operator_headers(db)
    for hour in range(0, 24, 3):
        at = BASE + dt.timedelta(hours=hour)
        conversation = make_conversation(db, created_at=at)
        add_customer_message(db, conversation, "Where is my parcel?", created_at=at)
        add_assistant_reply(
            db, conversation, "On its way.", model_version="mv", latency_ms=hour, created_at=at
        )
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    counts: dict[tuple[int, str | None], int] = {}
    event.listen(connection, "before_cursor_execute", record)
    try:
        for buckets in (1, 24, 96):
            for version in (None, "mv"):
                params: dict[str, Any] = {
                    "since": BASE.isoformat(),
                    "until": (BASE + dt.timedelta(hours=24)).isoformat(),
                    "buckets": buckets,
                }
                if version is not None:
                    params["model_version"] = version
                statements.clear()
                response = client.get("/v1/operator/metrics/series", params=params, headers=headers)
                assert response.status_code == 200, response.text
                assert len(response.json()["points"]) == buckets
                counts[buckets, version] = len(statements)
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert len(set(counts.values())) == 1, counts
    # The seven figure queries and the promotions, next to the token check and the savepoints.
    assert counts[96, None] <= 13, counts
