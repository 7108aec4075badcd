"""The operator API against real PostgreSQL: login, tokens, conversation review, corrections,
intent labels, the metrics summary and the model list. Every write must leave an audit row."""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import Correction, Message, OperatorRole, OperatorSession, utcnow
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.operators import OperatorRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from feedback.settings import Settings
from tests.chat_api.helpers import (
    add_assistant_reply,
    add_customer_message,
    assert_error,
    audit_entries,
    auth,
    login,
    make_api_key,
    make_conversation,
    make_operator,
    operator_headers,
    set_rating_time,
)

UTC = dt.UTC


# --- login -------------------------------------------------------------------------------------


def test_login_returns_a_working_token_and_is_audited(
    client: TestClient, db: Session, settings: Settings
) -> None:
    operator, password = make_operator(db, name="Ada")
    before = utcnow()

    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": password}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].startswith("cdo_")
    assert body["operator"]["id"] == str(operator.id)
    assert body["operator"]["email"] == operator.email
    assert body["operator"]["role"] == "operator"
    assert body["operator"]["active"] is True
    assert body["operator"]["last_login_at"] is not None
    assert "password_hash" not in body["operator"]
    expires_at = dt.datetime.fromisoformat(body["expires_at"])
    ttl = dt.timedelta(minutes=settings.auth.operator_token_ttl_minutes)
    assert before + ttl - dt.timedelta(seconds=5) <= expires_at <= utcnow() + ttl

    me = client.get("/v1/operator/me", headers=auth(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == str(operator.id)

    db.refresh(operator)
    assert operator.last_login_at is not None and operator.last_login_at >= before
    # Only the token's hash is stored.
    sessions = db.scalars(
        select(OperatorSession).where(OperatorSession.operator_id == operator.id)
    ).all()
    assert len(sessions) == 1
    assert sessions[0].token_hash != body["access_token"]
    assert body["access_token"] not in sessions[0].token_hash

    (entry,) = audit_entries(db, action="operator.login", target_id=str(operator.id))
    assert entry.actor_type == "operator"
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "operator"
    assert entry.details == {"ip": "testclient"}


def test_login_email_is_case_and_space_insensitive(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db, email="mixed.case@example.com")
    response = client.post(
        "/v1/operator/login", json={"email": "  Mixed.Case@EXAMPLE.com ", "password": password}
    )
    assert response.status_code == 200, response.text
    assert response.json()["operator"]["id"] == str(operator.id)


def test_login_wrong_password(client: TestClient, db: Session) -> None:
    operator, _ = make_operator(db)
    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": "not the password!"}
    )
    error = assert_error(response, 401, "login_failed")
    assert "wrong e-mail or password" in error["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert audit_entries(db, action="operator.login") == []
    db.refresh(operator)
    assert operator.last_login_at is None


def test_login_unknown_email_looks_like_a_wrong_password(client: TestClient, db: Session) -> None:
    operator, _ = make_operator(db)
    wrong_password = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": "x" * 20}
    )
    unknown = client.post(
        "/v1/operator/login", json={"email": "nobody@example.com", "password": "x" * 20}
    )
    error = assert_error(unknown, 401, "login_failed")
    # No account enumeration: the same answer as for a wrong password.
    assert error == wrong_password.json()["error"]
    assert audit_entries(db, action="operator.login") == []


def test_login_deactivated_operator(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db, active=False)
    response = client.post(
        "/v1/operator/login", json={"email": operator.email, "password": password}
    )
    error = assert_error(response, 401, "login_failed")
    assert "deactivated" in error["message"]
    assert (
        db.scalars(select(OperatorSession).where(OperatorSession.operator_id == operator.id)).all()
        == []
    )
    assert audit_entries(db, action="operator.login") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com"},
        {"password": "x" * 12},
        {"email": "a@example.com", "password": "x" * 12, "remember": True},
        {"email": "a@example.com", "password": "x" * 1025},
    ],
)
def test_login_invalid_body(client: TestClient, body: dict[str, Any]) -> None:
    error = assert_error(client.post("/v1/operator/login", json=body), 422, "validation_error")
    assert error["details"]


def test_login_is_rate_limited_per_ip(client: TestClient, db: Session, settings: Settings) -> None:
    limit = settings.rate_limit.logins_per_ip_per_minute
    body = {"email": "nobody@example.com", "password": "x" * 12}
    for _ in range(limit):
        assert client.post("/v1/operator/login", json=body).status_code == 401
    response = client.post("/v1/operator/login", json=body)
    error = assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert error["retry_after"] == retry_after


# --- tokens ------------------------------------------------------------------------------------


def test_missing_token(client: TestClient) -> None:
    response = client.get("/v1/operator/me")
    error = assert_error(response, 401, "unauthorized")
    assert "login" in error["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer garbage", "Bearer cdo_" + "A" * 43, "Basic dXNlcjpwYXNz", "cdo_abc"],
)
def test_garbage_token(client: TestClient, header: str) -> None:
    response = client.get("/v1/operator/me", headers={"Authorization": header})
    assert_error(response, 401)


def test_unknown_bearer_token_is_invalid_token(client: TestClient) -> None:
    error = assert_error(client.get("/v1/operator/me", headers=auth("garbage")), 401)
    assert error["code"] == "invalid_token"


def test_logout_revokes_the_token_only(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    first = login(client, operator.email, password)
    second = login(client, operator.email, password)

    response = client.post("/v1/operator/logout", headers=first)
    assert response.status_code == 204
    assert response.content == b""

    error = assert_error(client.get("/v1/operator/me", headers=first), 401, "invalid_token")
    assert "revoked" in error["message"]
    # Another session of the same operator is untouched.
    assert client.get("/v1/operator/me", headers=second).status_code == 200
    # Logging out again with the revoked token is refused.
    assert_error(client.post("/v1/operator/logout", headers=first), 401, "invalid_token")

    (entry,) = audit_entries(db, action="operator.logout")
    assert entry.actor_id == str(operator.id)
    assert entry.target_id == str(operator.id)
    db.expire_all()
    revoked = db.scalars(
        select(OperatorSession).where(
            OperatorSession.operator_id == operator.id, OperatorSession.revoked_at.is_not(None)
        )
    ).all()
    assert len(revoked) == 1


@pytest.mark.parametrize("ttl", [dt.timedelta(seconds=-1), dt.timedelta(0)])
def test_expired_token_from_issue_session(
    client: TestClient, db: Session, ttl: dt.timedelta
) -> None:
    operator, _ = make_operator(db)
    issued = OperatorRepository(db).issue_session(operator, ttl=ttl)
    db.flush()
    error = assert_error(
        client.get("/v1/operator/me", headers=auth(issued.token)), 401, "invalid_token"
    )
    assert "expired" in error["message"]


def test_token_expires_when_expires_at_passes(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    assert client.get("/v1/operator/me", headers=headers).status_code == 200

    (op_session,) = db.scalars(
        select(OperatorSession).where(OperatorSession.operator_id == operator.id)
    ).all()
    op_session.expires_at = utcnow() - dt.timedelta(seconds=1)
    db.flush()

    error = assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    assert "expired" in error["message"]


def test_token_of_deactivated_operator_stops_working(client: TestClient, db: Session) -> None:
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    db.refresh(operator)
    operator.active = False  # directly, without revoking sessions: the check must still hold
    db.flush()
    error = assert_error(client.get("/v1/operator/me", headers=headers), 401, "invalid_token")
    assert "deactivated" in error["message"]


def test_api_key_is_not_an_operator_token(client: TestClient, db: Session) -> None:
    _, key = make_api_key(db)
    assert_error(client.get("/v1/operator/me", headers=auth(key)), 401, "invalid_token")


FIXED_ID = "7d3f1c2a-0000-4000-8000-000000000001"  # fixed: xdist needs stable test ids


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/operator/me", None),
        ("POST", "/v1/operator/logout", None),
        ("GET", "/v1/operator/conversations", None),
        ("GET", f"/v1/operator/conversations/{FIXED_ID}", None),
        ("POST", f"/v1/operator/messages/{FIXED_ID}/correction", {"corrected_intent": "x"}),
        ("POST", f"/v1/operator/messages/{FIXED_ID}/intent", {"intent": "x"}),
        ("GET", "/v1/operator/metrics/summary", None),
        ("GET", "/v1/operator/models", None),
    ],
)
def test_every_operator_endpoint_needs_a_token(
    client: TestClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    assert_error(client.request(method, path, json=body), 401, "unauthorized")


def test_me(client: TestClient, db: Session) -> None:
    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    body = client.get("/v1/operator/me", headers=headers).json()
    assert body["id"] == str(admin.id)
    assert body["email"] == admin.email
    assert body["name"] == admin.name
    assert body["role"] == "admin"
    assert body["active"] is True
    assert set(body) == {"id", "email", "name", "role", "active", "created_at", "last_login_at"}


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
    repo.hand_off(low, reason="customer_request")
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
    assert low["message_count"] == 2
    assert low["last_message"] == "Yes, the discount applies"
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
    assert [(m["seq"], m["role"]) for m in body["messages"]] == [
        (1, "customer"),
        (2, "assistant"),
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


# --- corrections and labels --------------------------------------------------------------------


@pytest.fixture
def exchange(db: Session) -> tuple[Message, Message]:
    conversation = make_conversation(db)
    customer = add_customer_message(db, conversation, "Where is my order?", intent="delivery")
    reply = add_assistant_reply(
        db, conversation, "It ships tomorrow", intent="delivery", model_version="mv-a"
    )
    return customer, reply


def _corrections(db: Session, message_id: uuid.UUID) -> list[Correction]:
    db.expire_all()
    return list(
        db.scalars(
            select(Correction)
            .where(Correction.message_id == message_id)
            .order_by(Correction.created_at)
        )
    )


def test_correct_reply_text(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    operator, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction",
        headers=headers,
        json={"corrected_text": "It ships today; write to help@example.com"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message_id"] == str(reply.id)
    assert body["operator_id"] == str(operator.id)
    # Corrected text is redacted like any stored text.
    assert body["corrected_text"] == "It ships today; write to [EMAIL]"
    assert body["corrected_intent"] is None
    assert body["exclude_from_training"] is False

    (row,) = _corrections(db, reply.id)
    assert str(row.id) == body["id"]
    assert row.conversation_id == reply.conversation_id
    assert row.corrected_text == "It ships today; write to [EMAIL]"

    (entry,) = audit_entries(db, action="message.correct", target_id=str(reply.id))
    assert entry.actor_type == "operator"
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "message"
    assert entry.details == {
        "correction_id": body["id"],
        "conversation_id": str(reply.conversation_id),
        "corrected_text": True,
        "corrected_intent": None,
        "previous_intent": "delivery",
        "exclude_from_training": False,
    }
    assert "help@example.com" not in str(entry.details)


def test_correct_reply_intent_only(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction",
        headers=headers,
        json={"corrected_intent": "shipping"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["corrected_text"] is None
    assert response.json()["corrected_intent"] == "shipping"
    (entry,) = audit_entries(db, action="message.correct", target_id=str(reply.id))
    assert entry.details["corrected_text"] is False
    assert entry.details["corrected_intent"] == "shipping"
    assert entry.details["previous_intent"] == "delivery"
    # The predicted intent of the message itself stays as it was.
    db.refresh(reply)
    assert reply.intent == "delivery"


def test_correct_reply_text_and_intent_excluded_from_training(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction",
        headers=headers,
        json={
            "corrected_text": "Better reply",
            "corrected_intent": "shipping",
            "exclude_from_training": True,
            "note": "rude",
        },
    )
    assert response.status_code == 201, response.text
    (row,) = _corrections(db, reply.id)
    assert (row.corrected_text, row.corrected_intent, row.exclude_from_training, row.note) == (
        "Better reply",
        "shipping",
        True,
        "rude",
    )
    (entry,) = audit_entries(db, action="message.correct")
    assert entry.details["exclude_from_training"] is True


def test_correct_reply_only_exclude_from_training(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/correction",
        headers=headers,
        json={"exclude_from_training": True},
    )
    assert response.status_code == 201, response.text
    assert len(audit_entries(db, action="message.correct")) == 1


def test_corrections_are_kept_as_history(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    for text in ("First try", "Second try"):
        response = client.post(
            f"/v1/operator/messages/{reply.id}/correction",
            headers=headers,
            json={"corrected_text": text},
        )
        assert response.status_code == 201
    assert [c.corrected_text for c in _corrections(db, reply.id)] == ["First try", "Second try"]
    assert len(audit_entries(db, action="message.correct", target_id=str(reply.id))) == 2


def test_correct_text_of_customer_message_conflicts(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/correction",
        headers=headers,
        json={"corrected_text": "Where is my parcel?", "corrected_intent": "delivery"},
    )
    error = assert_error(response, 409, "conflict")
    assert "assistant" in error["message"]
    assert _corrections(db, customer.id) == []
    assert audit_entries(db, action="message.correct") == []


def test_correct_intent_of_customer_message_is_allowed(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, _ = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/correction",
        headers=headers,
        json={"corrected_intent": "complaint"},
    )
    assert response.status_code == 201, response.text
    assert [c.corrected_intent for c in _corrections(db, customer.id)] == ["complaint"]
    assert len(audit_entries(db, action="message.correct", target_id=str(customer.id))) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"exclude_from_training": False},
        {"note": "only a note"},
    ],
)
def test_correction_without_a_change_is_422(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction", headers=headers, json=body
    )
    assert_error(response, 422)
    assert _corrections(db, reply.id) == []
    assert audit_entries(db, action="message.correct") == []


@pytest.mark.parametrize(
    "body",
    [
        {"corrected_text": ""},
        {"corrected_intent": ""},
        {"corrected_text": "x" * 10_001},
        {"corrected_intent": "x" * 121},
        {"corrected_text": "fine", "unexpected": 1},
    ],
)
def test_correction_invalid_body(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/correction", headers=headers, json=body
    )
    assert_error(response, 422, "validation_error")
    assert audit_entries(db, action="message.correct") == []


def test_correct_unknown_message(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    missing = uuid.uuid4()
    response = client.post(
        f"/v1/operator/messages/{missing}/correction",
        headers=headers,
        json={"corrected_text": "anything"},
    )
    error = assert_error(response, 404, "not_found")
    assert str(missing) in error["message"]
    assert audit_entries(db, action="message.correct") == []


def test_label_intent(client: TestClient, db: Session, exchange: tuple[Message, Message]) -> None:
    customer, _ = exchange
    operator, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/intent",
        headers=headers,
        json={"intent": "order_status", "note": "not delivery yet"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["corrected_intent"] == "order_status"
    assert body["corrected_text"] is None
    assert body["note"] == "not delivery yet"
    assert body["operator_id"] == str(operator.id)

    (row,) = _corrections(db, customer.id)
    assert row.corrected_intent == "order_status"
    (entry,) = audit_entries(db, action="message.label_intent", target_id=str(customer.id))
    assert entry.actor_id == str(operator.id)
    assert entry.target_type == "message"
    assert entry.details == {
        "correction_id": body["id"],
        "conversation_id": str(customer.conversation_id),
        "intent": "order_status",
        "previous_intent": "delivery",
    }


def test_label_intent_confirming_the_prediction(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    _, reply = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{reply.id}/intent", headers=headers, json={"intent": "delivery"}
    )
    assert response.status_code == 201
    (entry,) = audit_entries(db, action="message.label_intent")
    assert entry.details["intent"] == entry.details["previous_intent"] == "delivery"


@pytest.mark.parametrize(
    "body", [{}, {"intent": ""}, {"intent": "x" * 121}, {"intent": "a", "other": 1}]
)
def test_label_intent_invalid_body(
    client: TestClient, db: Session, exchange: tuple[Message, Message], body: dict[str, Any]
) -> None:
    customer, _ = exchange
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{customer.id}/intent", headers=headers, json=body
    )
    assert_error(response, 422, "validation_error")
    assert _corrections(db, customer.id) == []
    assert audit_entries(db, action="message.label_intent") == []


def test_label_intent_unknown_message(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    response = client.post(
        f"/v1/operator/messages/{uuid.uuid4()}/intent", headers=headers, json={"intent": "x"}
    )
    assert_error(response, 404, "not_found")
    assert audit_entries(db, action="message.label_intent") == []


def test_writes_are_visible_in_the_admin_audit_log(
    client: TestClient, db: Session, exchange: tuple[Message, Message]
) -> None:
    customer, reply = exchange
    operator, password = make_operator(db)
    headers = login(client, operator.email, password)
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert (
        client.post(
            f"/v1/operator/messages/{reply.id}/correction",
            headers=headers,
            json={"corrected_text": "Fixed"},
        ).status_code
        == 201
    )
    assert (
        client.post(
            f"/v1/operator/messages/{customer.id}/intent", headers=headers, json={"intent": "x"}
        ).status_code
        == 201
    )
    assert client.post("/v1/operator/logout", headers=headers).status_code == 204

    entries = client.get("/v1/admin/audit", headers=admin_headers, params={"limit": 1000}).json()
    mine = [e for e in entries if e["actor_id"] == str(operator.id)]
    assert [e["action"] for e in mine] == [
        "operator.logout",
        "message.label_intent",
        "message.correct",
        "operator.login",
    ]
    assert all(e["actor_type"] == "operator" for e in mine)


# --- metrics summary ---------------------------------------------------------------------------

MBASE = dt.datetime(2002, 6, 1, tzinfo=UTC)
MWINDOW = {"since": MBASE.isoformat(), "until": (MBASE + dt.timedelta(days=30)).isoformat()}


def _m(n: float) -> dt.datetime:
    return MBASE + dt.timedelta(days=n)


@dataclass
class MetricsData:
    labels: list[tuple[uuid.UUID, str]]  # (message id, label) to post through the API
    latencies: dict[str, list[float]]


@pytest.fixture
def metrics_data(db: Session) -> MetricsData:
    """Four conversations in June 2002 and one outside, with ratings, replies and latencies."""
    repo = ConversationRepository(db)
    ratings = RatingRepository(db)

    c1 = make_conversation(db, created_at=_m(1))
    add_customer_message(db, c1, "Where is my parcel", intent="delivery", created_at=_m(1))
    r1 = add_assistant_reply(
        db,
        c1,
        "On its way",
        intent="delivery",
        model_version="mv-x",
        latency_ms=120,
        created_at=_m(1),
    )
    r2 = add_assistant_reply(
        db,
        c1,
        "Tomorrow",
        intent="refund",
        model_version="mv-x",
        latency_ms=80,
        created_at=_m(1),
    )
    set_rating_time(db, ratings.rate_message(r1, thumbs=1), _m(1))
    set_rating_time(db, ratings.rate_message(r2, thumbs=-1, csat=5), _m(1))

    c2 = make_conversation(db, created_at=_m(2))
    add_customer_message(db, c2, "Refund please", intent="refund", created_at=_m(2))
    r3 = add_assistant_reply(
        db, c2, "Done", intent="promo", model_version="mv-y", latency_ms=300, created_at=_m(2)
    )
    r4 = add_assistant_reply(
        db, c2, "Anything else?", model_version="mv-y", latency_ms=45, created_at=_m(2)
    )
    set_rating_time(db, ratings.rate_message(r3, thumbs=1), _m(2))
    set_rating_time(db, ratings.rate_message(r4, thumbs=1), _m(2))
    set_rating_time(db, ratings.rate_conversation(c2, csat=4), _m(2))
    repo.hand_off(c2, reason="customer_request")

    c3 = make_conversation(db, created_at=_m(3))
    add_customer_message(db, c3, "Hello", created_at=_m(3))
    r5 = add_assistant_reply(db, c3, "Hi!", model_version="mv-x", latency_ms=200, created_at=_m(3))
    add_assistant_reply(
        db, c3, "How can I help?", model_version="mv-y", latency_ms=95, created_at=_m(3)
    )
    add_assistant_reply(db, c3, "Still there?", model_version="mv-x", created_at=_m(3))
    set_rating_time(db, ratings.rate_message(r5, thumbs=-1), _m(3))
    set_rating_time(db, ratings.rate_conversation(c3, csat=2), _m(3))

    c4 = make_conversation(db, created_at=_m(4))
    add_customer_message(db, c4, "Anyone?", created_at=_m(4))
    add_customer_message(db, c4, "Hello??", created_at=_m(4))
    r7 = add_assistant_reply(
        db, c4, "Sorry", model_version="mv-x", latency_ms=1000, created_at=_m(4)
    )

    # Outside the window: must not count anywhere.
    outside = make_conversation(db, created_at=MBASE - dt.timedelta(days=1))
    add_customer_message(
        db, outside, "Old", intent="delivery", created_at=MBASE - dt.timedelta(days=1)
    )
    old_reply = add_assistant_reply(
        db,
        outside,
        "Old reply",
        intent="delivery",
        model_version="mv-x",
        latency_ms=9999,
        created_at=MBASE - dt.timedelta(days=1),
    )
    set_rating_time(
        db, ratings.rate_message(old_reply, thumbs=-1, csat=1), MBASE - dt.timedelta(days=1)
    )
    repo.hand_off(outside, reason="customer_request")
    db.flush()

    return MetricsData(
        labels=[
            (r1.id, "delivery"),  # mv-x, correct
            (r2.id, "billing"),  # mv-x, wrong
            (r3.id, "billing"),  # mv-y, first wrong ...
            (r3.id, "promo"),  # ... then relabelled: the newest label counts, correct
            (r4.id, "other"),  # no predicted intent: not verified
            (r7.id, "complaint"),  # no predicted intent: not verified
            (old_reply.id, "billing"),  # outside the window
        ],
        latencies={
            "all": [120, 80, 300, 45, 200, 95, 1000],
            "mv-x": [120, 80, 200, 1000],
        },
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(sorted(values), n=100, method="inclusive")
    return cuts[49], cuts[94]


def test_metrics_summary(client: TestClient, db: Session, metrics_data: MetricsData) -> None:
    _, headers = operator_headers(db)
    for message_id, label in metrics_data.labels:
        response = client.post(
            f"/v1/operator/messages/{message_id}/intent", headers=headers, json={"intent": label}
        )
        assert response.status_code == 201, response.text
    # A text-only correction is not an intent label.
    first_reply = metrics_data.labels[0][0]
    client.post(
        f"/v1/operator/messages/{first_reply}/correction",
        headers=headers,
        json={"corrected_text": "Better"},
    )

    response = client.get("/v1/operator/metrics/summary", headers=headers, params=MWINDOW)
    assert response.status_code == 200, response.text
    body = response.json()

    p50, p95 = _percentiles(metrics_data.latencies["all"])
    up, down = 3, 2
    csats = [5, 4, 2]
    assert dt.datetime.fromisoformat(body["since"]) == MBASE
    assert dt.datetime.fromisoformat(body["until"]) == MBASE + dt.timedelta(days=30)
    assert body["model_version"] is None
    assert body["conversations"] == 4
    assert body["customer_messages"] == 5
    assert body["assistant_replies"] == 8
    assert body["thumbs_up"] == up
    assert body["thumbs_down"] == down
    assert body["positive_rate"] == pytest.approx(up / (up + down))
    assert body["csat_count"] == len(csats)
    assert body["csat_mean"] == pytest.approx(sum(csats) / len(csats))
    assert body["handed_off"] == 1
    assert body["handoff_rate"] == pytest.approx(1 / 4)
    assert body["verified_intents"] == 3
    assert body["intent_accuracy"] == pytest.approx(2 / 3)
    assert body["latency_p50_ms"] == pytest.approx(p50)
    assert body["latency_p95_ms"] == pytest.approx(p95)
    assert body["latency_p50_ms"] == pytest.approx(120)
    assert body["production_model"] is None


def test_metrics_summary_per_model_version(
    client: TestClient, db: Session, metrics_data: MetricsData
) -> None:
    _, headers = operator_headers(db)
    for message_id, label in metrics_data.labels:
        client.post(
            f"/v1/operator/messages/{message_id}/intent", headers=headers, json={"intent": label}
        )
    response = client.get(
        "/v1/operator/metrics/summary", headers=headers, params={**MWINDOW, "model_version": "mv-x"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    p50, p95 = _percentiles(metrics_data.latencies["mv-x"])
    assert body["model_version"] == "mv-x"
    assert body["assistant_replies"] == 5
    assert body["thumbs_up"] == 1
    assert body["thumbs_down"] == 2
    assert body["positive_rate"] == pytest.approx(1 / 3)
    # CSAT of conversations that mv-x took part in: c1 (5 on a reply) and c3 (2).
    assert body["csat_count"] == 2
    assert body["csat_mean"] == pytest.approx(3.5)
    assert body["verified_intents"] == 2
    assert body["intent_accuracy"] == pytest.approx(1 / 2)
    assert body["latency_p50_ms"] == pytest.approx(p50)
    assert body["latency_p95_ms"] == pytest.approx(p95)


def test_metrics_summary_of_an_empty_window(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    empty = {"since": "1990-01-01T00:00:00Z", "until": "1990-02-01T00:00:00Z"}
    body = client.get("/v1/operator/metrics/summary", headers=headers, params=empty).json()
    assert body["conversations"] == 0
    assert body["assistant_replies"] == 0
    assert body["thumbs_up"] == body["thumbs_down"] == 0
    for ratio in ("positive_rate", "csat_mean", "handoff_rate", "intent_accuracy"):
        assert body[ratio] is None
    assert body["latency_p50_ms"] is None
    assert body["latency_p95_ms"] is None


def test_metrics_summary_names_the_production_model(client: TestClient, db: Session) -> None:
    repo = ModelVersionRepository(db)
    repo.register(version_id="student-prod-1", bundle_uri="file:///b/1", checksum="a" * 64)
    repo.set_alias(PRODUCTION, "student-prod-1")
    db.flush()
    _, headers = operator_headers(db)
    body = client.get("/v1/operator/metrics/summary", headers=headers).json()
    assert body["production_model"] == "student-prod-1"


def test_metrics_summary_rejects_bad_dates(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    response = client.get(
        "/v1/operator/metrics/summary", headers=headers, params={"since": "last week"}
    )
    assert_error(response, 422, "validation_error")


# --- models ------------------------------------------------------------------------------------


def test_operator_models_lists_versions_and_aliases(client: TestClient, db: Session) -> None:
    repo = ModelVersionRepository(db)
    older = repo.register(
        version_id="student-op-1",
        bundle_uri="file:///bundles/1",
        checksum="1" * 64,
        metrics={"accuracy": 0.91},
    )
    newer = repo.register(
        version_id="student-op-2", bundle_uri="file:///bundles/2", checksum="2" * 64
    )
    newer.created_at = older.created_at + dt.timedelta(seconds=1)
    repo.set_alias(PRODUCTION, "student-op-1")
    db.flush()
    _, headers = operator_headers(db)

    response = client.get("/v1/operator/models", headers=headers)
    assert response.status_code == 200, response.text
    mine = [m for m in response.json() if m["id"] in {"student-op-1", "student-op-2"}]
    assert [m["id"] for m in mine] == ["student-op-2", "student-op-1"]  # newest first
    assert mine[0]["aliases"] == []
    assert mine[1]["aliases"] == [PRODUCTION]
    assert mine[1]["bundle_uri"] == "file:///bundles/1"
    assert mine[1]["checksum"] == "1" * 64
    assert mine[1]["metrics"] == {"accuracy": 0.91}

    repo.set_alias(PRODUCTION, "student-op-2")
    db.flush()
    again = {m["id"]: m for m in client.get("/v1/operator/models", headers=headers).json()}
    assert again["student-op-2"]["aliases"] == [PRODUCTION]
    assert again["student-op-1"]["aliases"] == []


def test_operator_models_empty_registry(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    response = client.get("/v1/operator/models", headers=headers)
    assert response.status_code == 200
    assert isinstance(response.json(), list)


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


def test_metrics_per_model_version_count_only_its_conversations(
    client: TestClient, db: Session
) -> None:
    _, headers = operator_headers(db)
    when = dt.datetime(2003, 5, 1, 12, tzinfo=dt.UTC)
    served = make_conversation(db, created_at=when)
    add_customer_message(db, served, "Where is my parcel?", created_at=when)
    add_assistant_reply(db, served, "On its way.", model_version="mv-only", created_at=when)
    other = make_conversation(db, created_at=when)
    add_customer_message(db, other, "Hello?", created_at=when)
    other.handed_off = True
    db.flush()
    window = {"since": "2003-05-01T00:00:00Z", "until": "2003-05-02T00:00:00Z"}
    overall = client.get("/v1/operator/metrics/summary", headers=headers, params=window).json()
    scoped = client.get(
        "/v1/operator/metrics/summary",
        headers=headers,
        params={**window, "model_version": "mv-only"},
    ).json()
    assert (overall["conversations"], overall["customer_messages"], overall["handed_off"]) == (
        2,
        2,
        1,
    )
    assert (scoped["conversations"], scoped["customer_messages"], scoped["handed_off"]) == (1, 1, 0)
