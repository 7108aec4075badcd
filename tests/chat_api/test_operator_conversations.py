"""Operator API: the conversation list with its filters, one conversation, superseded labels."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from feedback import handoff
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from tests.fixtures.operators import (
    add_assistant_reply,
    add_customer_message,
    assert_error,
    audit_entries,
    make_conversation,
    make_operator,
    operator_headers,
)

UTC = dt.UTC


# --- conversation list -------------------------------------------------------------------------

BASE = dt.datetime(2001, 3, 1, tzinfo=UTC)
WINDOW = {"since": BASE.isoformat(), "until": (BASE + dt.timedelta(days=30)).isoformat()}


@dataclass
class Dataset:
    down: uuid.UUID
    up: uuid.UUID
    low: uuid.UUID
    plain: uuid.UUID
    csat_ok: uuid.UUID
    old: uuid.UUID
    low_reply: uuid.UUID


def _day(n: float) -> dt.datetime:
    return BASE + dt.timedelta(days=n)


@pytest.fixture
def dataset(db: Session) -> Dataset:
    """Five conversations in March 2001 (plus an older one), each standing out in one way."""
    repo = ConversationRepository(db)
    ratings = RatingRepository(db)
    operator, _ = make_operator(db)

    down = make_conversation(db, created_at=_day(1))
    add_customer_message(db, down, "My parcel never arrived", intent="delivery")
    reply = add_assistant_reply(
        db, down, "Sorry, let me check the tracking", model_version="mv-a", latency_ms=100
    )
    ratings.rate_message(reply, thumbs=-1, csat=1)

    up = make_conversation(db, created_at=_day(2))
    add_customer_message(db, up, "How do I get a refund?", intent="refund")
    reply = add_assistant_reply(db, up, "Refunds take five days", model_version="mv-b")
    ratings.rate_message(reply, thumbs=1, csat=4)

    low = make_conversation(db, created_at=_day(3), site="shop", locale="de-DE")
    add_customer_message(db, low, "Is the discount 50% off today?", intent="promo")
    low_reply = add_assistant_reply(
        db, low, "Yes, the discount applies", intent="promo", model_version="mv-a"
    )
    ratings.rate_conversation(low, csat=2, comment="meh")
    handoff.request_human(db, low.id, reason="customer_request")
    repo.close(low)

    plain = make_conversation(db, created_at=_day(4))
    billing = add_customer_message(db, plain, "Is 500 off possible on my bill?", intent="billing")
    CorrectionRepository(db).add(billing, operator_id=operator.id, corrected_intent="warranty")
    add_customer_message(db, plain, "I saved it under C:\\bills\\june")

    csat_ok = make_conversation(db, created_at=_day(5))
    add_customer_message(db, csat_ok, "Thanks for the help_desk answer")
    ratings.rate_conversation(csat_ok, csat=5)

    old = make_conversation(db, created_at=BASE - dt.timedelta(days=10))
    add_customer_message(db, old, "An old refund question", intent="refund")
    reply = add_assistant_reply(db, old, "Old answer", model_version="mv-a")
    ratings.rate_message(reply, thumbs=-1)
    db.flush()
    return Dataset(
        down=down.id,
        up=up.id,
        low=low.id,
        plain=plain.id,
        csat_ok=csat_ok.id,
        old=old.id,
        low_reply=low_reply.id,
    )


def _list(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    query = {**WINDOW, **params}
    response = client.get("/v1/operator/conversations", headers=headers, params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _ids(page: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(item["id"]) for item in page["items"]]


def test_list_conversations_newest_first_with_summaries(
    client: TestClient, db: Session, dataset: Dataset
) -> None:
    _, headers = operator_headers(db)
    page = _list(client, headers)
    d = dataset
    assert _ids(page) == [d.csat_ok, d.plain, d.low, d.up, d.down]
    assert page["total"] == 5
    assert page["limit"] == 50
    assert page["offset"] == 0

    low = next(item for item in page["items"] if item["id"] == str(d.low))
    assert low["status"] == "closed"
    assert low["handed_off"] is True
    assert low["message_count"] == 3  # customer, assistant, and the handoff's notice
    assert low["last_message"] == handoff.HANDOFF_NOTICE
    assert low["intents"] == ["promo"]
    assert low["model_versions"] == ["mv-a"]
    assert dt.datetime.fromisoformat(low["created_at"]) == _day(3)


def test_list_conversations_with_only_until(
    client: TestClient, db: Session, dataset: Dataset
) -> None:
    _, headers = operator_headers(db)
    # Only an upper bound (so rows other tests may have committed "now" stay out of the way).
    response = client.get(
        "/v1/operator/conversations", headers=headers, params={"until": WINDOW["until"]}
    )
    assert response.status_code == 200
    page = response.json()
    wanted = [dataset.csat_ok, dataset.plain, dataset.low, dataset.up, dataset.down, dataset.old]
    assert [i for i in _ids(page) if i in wanted] == wanted
    assert page["total"] >= 6


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"rating": "down"}, ["down"]),
        ({"rating": "up"}, ["up"]),
        ({"rating": "low_csat"}, ["low", "down"]),
        ({"rating": "rated"}, ["csat_ok", "low", "up", "down"]),
        ({"rating": "unrated"}, ["plain"]),
        ({"intent": "delivery"}, ["down"]),
        ({"intent": "promo"}, ["low"]),
        ({"intent": "billing"}, ["plain"]),  # predicted
        ({"intent": "warranty"}, ["plain"]),  # corrected by an operator
        ({"intent": "nothing-like-this"}, []),
        ({"handed_off": "true"}, ["low"]),
        ({"handed_off": "false"}, ["csat_ok", "plain", "up", "down"]),
        ({"model_version": "mv-a"}, ["low", "down"]),
        ({"model_version": "mv-b"}, ["up"]),
        ({"model_version": "mv-zzz"}, []),
        ({"q": "50%"}, ["low"]),  # a literal %, not a wildcard: "500 off" must not match
        ({"q": "%"}, ["low"]),
        ({"q": "p_desk"}, ["csat_ok"]),  # a literal _: matches "help_desk" only
        ({"q": "_"}, ["csat_ok"]),
        ({"q": "\\"}, ["plain"]),  # a literal backslash, not an escape character
        ({"q": "C:\\bills"}, ["plain"]),
        ({"q": "\\%"}, []),
        ({"q": "REFUND"}, ["up"]),  # case-insensitive, any role
        ({"q": "tracking"}, ["down"]),
        ({"status": "closed"}, ["low"]),
        ({"status": "open"}, ["csat_ok", "plain", "up", "down"]),
        ({"rating": "rated", "model_version": "mv-a"}, ["low", "down"]),
        ({"rating": "down", "handed_off": "true"}, []),
    ],
)
def test_list_conversations_filters(
    client: TestClient,
    db: Session,
    dataset: Dataset,
    params: dict[str, str],
    expected: list[str],
) -> None:
    _, headers = operator_headers(db)
    page = _list(client, headers, **params)
    assert _ids(page) == [getattr(dataset, name) for name in expected]
    assert page["total"] == len(expected)


def test_list_conversations_since_until(client: TestClient, db: Session, dataset: Dataset) -> None:
    _, headers = operator_headers(db)
    # since is inclusive, until exclusive.
    page = _list(client, headers, since=_day(2).isoformat(), until=_day(4).isoformat())
    assert _ids(page) == [dataset.low, dataset.up]
    assert page["total"] == 2
    # Datetimes without a zone are UTC.
    naive = _list(
        client,
        headers,
        since=_day(2).replace(tzinfo=None).isoformat(),
        until=_day(4).replace(tzinfo=None).isoformat(),
    )
    assert _ids(naive) == [dataset.low, dataset.up]
    # Another zone is converted: 02:00+02:00 on day 2 is 00:00 UTC.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    zoned = _list(
        client,
        headers,
        since=_day(2).astimezone(plus_two).isoformat(),
        until=(_day(2) + dt.timedelta(seconds=1)).astimezone(plus_two).isoformat(),
    )
    assert _ids(zoned) == [dataset.up]
    older = _list(
        client, headers, since=(BASE - dt.timedelta(days=20)).isoformat(), until=BASE.isoformat()
    )
    assert _ids(older) == [dataset.old]


def test_list_conversations_paging(client: TestClient, db: Session, dataset: Dataset) -> None:
    _, headers = operator_headers(db)
    page = _list(client, headers, limit=2, offset=1)
    assert _ids(page) == [dataset.plain, dataset.low]
    assert page["total"] == 5
    assert page["limit"] == 2
    assert page["offset"] == 1
    last = _list(client, headers, limit=2, offset=4)
    assert _ids(last) == [dataset.down]
    beyond = _list(client, headers, limit=2, offset=10)
    assert beyond["items"] == []
    assert beyond["total"] == 5


def test_list_conversations_orders_same_time_stably(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    at = BASE + dt.timedelta(days=7)
    ids = sorted(make_conversation(db, created_at=at).id for _ in range(4))
    page = _list(client, headers, limit=2)
    rest = _list(client, headers, limit=2, offset=2)
    assert _ids(page) + _ids(rest) == ids


@pytest.mark.parametrize(
    "params",
    [
        {"rating": "sideways"},
        {"status": "archived"},
        {"handed_off": "maybe"},
        {"since": "yesterday"},
        {"limit": 0},
        {"limit": 201},
        {"offset": -1},
        {"q": "x" * 201},
        {"intent": "x" * 121},
    ],
)
def test_list_conversations_invalid_query(
    client: TestClient, db: Session, params: dict[str, Any]
) -> None:
    _, headers = operator_headers(db)
    response = client.get("/v1/operator/conversations", headers=headers, params=params)
    assert_error(response, 422, "validation_error")


# --- one conversation --------------------------------------------------------------------------


def test_read_conversation_with_ratings_and_corrections(
    client: TestClient, db: Session, dataset: Dataset
) -> None:
    operator, headers = operator_headers(db)
    correction = client.post(
        f"/v1/operator/messages/{dataset.low_reply}/correction",
        headers=headers,
        json={"corrected_text": "Yes, 50% off until Sunday", "note": "be precise"},
    )
    assert correction.status_code == 201, correction.text

    response = client.get(f"/v1/operator/conversations/{dataset.low}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(dataset.low)
    assert body["status"] == "closed"
    assert body["site"] == "shop"
    assert body["locale"] == "de-DE"
    assert body["handed_off"] is True
    assert body["handed_off_at"] is not None
    assert body["handoff_reason"] == "customer_request"
    assert body["state"] == "waiting" and body["assigned_operator_id"] is None
    assert [(m["seq"], m["role"]) for m in body["messages"]] == [
        (1, "customer"),
        (2, "assistant"),
        (3, "system"),  # the handoff's notice to the customer
    ]
    assert body["messages"][0]["text"] == "Is the discount 50% off today?"
    assert body["messages"][0]["intent"] == "promo"
    assert body["messages"][1]["id"] == str(dataset.low_reply)
    assert body["messages"][1]["model_version"] == "mv-a"

    (rating,) = body["ratings"]
    assert rating["message_id"] is None
    assert rating["csat"] == 2
    assert rating["thumbs"] is None
    assert rating["comment"] == "meh"

    (corr,) = body["corrections"]
    assert corr["id"] == correction.json()["id"]
    assert corr["message_id"] == str(dataset.low_reply)
    assert corr["operator_id"] == str(operator.id)
    assert corr["corrected_text"] == "Yes, 50% off until Sunday"
    assert corr["corrected_intent"] is None
    assert corr["note"] == "be precise"


def test_read_conversation_shows_thumbs_as_words(
    client: TestClient, db: Session, dataset: Dataset
) -> None:
    _, headers = operator_headers(db)
    body = client.get(f"/v1/operator/conversations/{dataset.down}", headers=headers).json()
    (rating,) = body["ratings"]
    assert rating["thumbs"] == "down"
    assert rating["csat"] == 1
    assert rating["message_id"] == body["messages"][1]["id"]
    assert body["corrections"] == []


def test_read_unknown_conversation(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    missing = uuid.uuid4()
    response = client.get(f"/v1/operator/conversations/{missing}", headers=headers)
    error = assert_error(response, 404, "not_found")
    assert str(missing) in error["message"]
    bad = client.get("/v1/operator/conversations/not-a-uuid", headers=headers)
    assert_error(bad, 422, "validation_error")


def test_reads_leave_no_audit_rows(client: TestClient, db: Session, dataset: Dataset) -> None:
    _, headers = operator_headers(db)
    before = len(audit_entries(db))
    for path in (
        "/v1/operator/me",
        "/v1/operator/conversations",
        f"/v1/operator/conversations/{dataset.low}",
        "/v1/operator/metrics/summary",
        "/v1/operator/models",
    ):
        assert client.get(path, headers=headers).status_code == 200
    assert len(audit_entries(db)) == before


def test_intent_filter_ignores_superseded_labels(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    conversation = make_conversation(db)
    reply = add_assistant_reply(db, conversation, "Refund on its way.", intent="refund")
    for label in ("delivery", "payment"):
        response = client.post(
            f"/v1/operator/messages/{reply.id}/intent", headers=headers, json={"intent": label}
        )
        assert response.status_code == 201
    ids = {
        intent: {
            item["id"]
            for item in client.get(
                "/v1/operator/conversations", headers=headers, params={"intent": intent}
            ).json()["items"]
        }
        for intent in ("refund", "delivery", "payment")
    }
    cid = str(conversation.id)
    assert cid in ids["refund"]  # predicted
    assert cid in ids["payment"]  # newest label
    assert cid not in ids["delivery"]  # replaced by a newer label
