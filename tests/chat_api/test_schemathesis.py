"""Schemathesis fuzzes every operation of the API from its own OpenAPI schema, as an admin and
without a token, with valid and with invalid inputs, against the real app on the test's
PostgreSQL transaction: no input it generates may produce a server error (5xx). Other checks
(documented status codes, response shapes) have their own tests; this one is the hostile
client's view. A 503 in the error envelope is an answer, not a failure (no model is deployed in
this app, and the store or the model may be busy); every other 5xx is.

As the admin, every request carries a freshly issued session token (a generated
`POST /v1/operator/logout` would otherwise sign the rest of the run out, and the fuzzer would
only see 401s), and the widget's operations get a real conversation and its widget token, so the
generated bodies and parameters reach the handlers.

A few examples per operation keep it to under a minute; `CHATDISTILL_FUZZ_EXAMPLES` raises the
count for a longer run by hand."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy.orm import Session

from feedback.models import OperatorRole
from feedback.repositories.operators import OperatorRepository
from tests.fixtures.operators import auth, make_operator

EXAMPLES = int(os.environ.get("CHATDISTILL_FUZZ_EXAMPLES", "5"))
WIDGET_PREFIX = "/v1/widget/conversations/{conversation_id}"


def is_a_clear_503(response: Any) -> bool:
    if response.status_code != 503:
        return False
    try:
        return bool(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return False


def fuzz_one(operation: Any, headers: Callable[[], dict[str, str]], **overrides: Any) -> int:
    """Send an operation's generated cases; raise on the first 5xx. Returns the cases sent."""
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(**overrides))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers=headers())
        assert response.status_code < 500 or is_a_clear_503(response), (
            f"{response.status_code} for {case.as_curl_command()}: {response.text[:300]}"
        )

    run()
    return sent


def fuzz_every_operation(
    client: TestClient, headers: Callable[[], dict[str, str]], mode: GenerationMode
) -> tuple[list[str], int]:
    """Run each operation's generated cases; return the failures (operation and error) and the
    number of requests sent."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    started = client.post("/v1/widget/conversations", json={})
    assert started.status_code == 201, started.text
    conversation = started.json()
    failed: list[str] = []
    sent = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, "the schema lists too few operations to be the real API"
    for operation in operations:
        if operation.path.endswith("/events"):
            continue  # a live stream never ends, so an in-process call would wait forever
            # (tests/chat_api/test_live.py drives them over real HTTP, bad cursors included)
        try:
            if operation.path.startswith(WIDGET_PREFIX):
                sent += fuzz_one(
                    operation,
                    lambda: auth(conversation["token"]),
                    generation_mode=mode,
                    path_parameters={"conversation_id": conversation["conversation_id"]},
                )
            else:
                sent += fuzz_one(operation, headers, generation_mode=mode)
        except Unsatisfiable:
            continue  # nothing invalid to send: an operation without parameters or body
        except Exception as exc:  # every failure is reported with its operation
            failed.append(f"{operation.label}: {str(exc)[:600]}")
    return failed, sent


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error_as_admin(
    client: TestClient, db: Session, mode: GenerationMode
) -> None:
    admin, _ = make_operator(db, role=OperatorRole.ADMIN)

    def fresh_session() -> dict[str, str]:
        issued = OperatorRepository(db).issue_session(admin, ttl=dt.timedelta(minutes=10))
        db.flush()
        return auth(issued.token)

    failed, sent = fuzz_every_operation(client, fresh_session, mode)
    assert not failed, "\n".join(failed)
    assert sent > 100


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error_without_a_token(
    client: TestClient, mode: GenerationMode
) -> None:
    failed, sent = fuzz_every_operation(client, dict, mode)
    assert not failed, "\n".join(failed)
    assert sent > 100
