"""The handoff through the API against real PostgreSQL: claim, takeover, assign, agent replies,
resolve, hand back, the inbox, permissions, audit rows and the operator message limit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from feedback.handoff import BOT_BACK_NOTICE, JOINED_NOTICE, RESOLVED_NOTICE
from feedback.models import Conversation, ConversationStateChange, Message, OperatorRole
from feedback.settings import Settings
from tests.conftest import TEST_SECRET
from tests.fixtures.operators import assert_error, audit_entries, operator_headers
from tests.fixtures.widget import post, start

OPS = "/v1/operator/conversations"


def waiting(client: TestClient, reason: str | None = None) -> tuple[str, dict[str, str]]:
    """A conversation the customer handed to a human."""
    cid, headers = start(client)
    assert post(client, cid, headers, "my parcel is lost").status_code == 503  # no model yet
    body = {"reason": reason} if reason else None
    response = client.post(f"/v1/widget/conversations/{cid}/handoff", json=body, headers=headers)
    assert response.status_code == 200 and response.json()["handed_off"] is True
    return cid, headers


def state_of(db: Session, cid: str) -> Conversation:
    db.expire_all()
    row = db.get(Conversation, uuid.UUID(cid))
    assert row is not None
    return row


def test_claim_reply_resolve_and_the_bot_is_back(client: TestClient, db: Session) -> None:
    cid, widget = waiting(client)
    operator, headers = operator_headers(db)
    claimed = client.post(f"{OPS}/{cid}/claim", headers=headers)
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert body["state"] == "agent" and body["assigned_operator_id"] == str(operator.id)
    assert body["message"]["role"] == "system" and body["message"]["text"] == JOINED_NOTICE

    # While an agent has it the bot stays quiet: the customer's message gets no reply (and no
    # 503 for the missing model: the model is never asked).
    quiet = post(client, cid, widget, "hello? are you there?")
    assert quiet.status_code == 201 and quiet.json()["reply"] is None
    assert quiet.json()["handoff"] is True

    sent = client.post(
        f"{OPS}/{cid}/messages", json={"text": "Hi, call me on +44 20 7946 0958"}, headers=headers
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["role"] == "agent" and message["operator_id"] == str(operator.id)
    assert "[PHONE]" in message["text"] and "7946" not in message["text"]
    stored = db.get(Message, uuid.UUID(message["id"]))
    assert stored is not None and stored.role == "agent" and "7946" not in stored.text
    assert state_of(db, cid).first_agent_reply_at is not None

    seen = client.get(f"/v1/widget/conversations/{cid}", headers=widget).json()
    assert seen["state"] == "agent"
    assert [m["role"] for m in seen["messages"]][-2:] == ["customer", "agent"]

    resolved = client.post(f"{OPS}/{cid}/resolve", headers=headers)
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    assert resolved.json()["message"]["text"] == RESOLVED_NOTICE
    assert state_of(db, cid).handed_off is False

    # A new question after a resolved case goes to the bot (503 here: no model deployed).
    again = post(client, cid, widget, "one more thing")
    assert again.status_code == 503 and again.json()["error"]["code"] == "no_model_deployed"
    assert state_of(db, cid).state == "bot"

    changes = db.scalars(
        select(ConversationStateChange)
        .where(ConversationStateChange.conversation_id == uuid.UUID(cid))
        .order_by(ConversationStateChange.id)
    ).all()
    assert [(c.from_state, c.to_state) for c in changes] == [
        ("bot", "waiting"),
        ("waiting", "agent"),
        ("agent", "resolved"),
        ("resolved", "bot"),
    ]
    assert changes[1].actor_id == str(operator.id)
    actions = [e.action for e in audit_entries(db, target_id=cid)]
    assert actions == ["conversation.resolve", "conversation.claim"]


def test_another_operator_is_refused_and_an_admin_takes_over(
    client: TestClient, db: Session
) -> None:
    cid, _ = waiting(client)
    first, first_headers = operator_headers(db)
    _, second_headers = operator_headers(db)
    admin, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    assert client.post(f"{OPS}/{cid}/claim", headers=first_headers).status_code == 200
    assert_error(client.post(f"{OPS}/{cid}/claim", headers=second_headers), 403, "forbidden")
    reply = client.post(f"{OPS}/{cid}/messages", json={"text": "me too"}, headers=second_headers)
    assert_error(reply, 403, "forbidden")
    assert_error(client.post(f"{OPS}/{cid}/resolve", headers=second_headers), 403)
    assert_error(client.post(f"{OPS}/{cid}/claim", headers=first_headers), 409, "conflict")

    taken = client.post(f"{OPS}/{cid}/claim", headers=admin_headers)
    assert taken.status_code == 200 and taken.json()["assigned_operator_id"] == str(admin.id)
    assert_error(
        client.post(f"{OPS}/{cid}/messages", json={"text": "still me"}, headers=first_headers),
        403,
    )
    entries = audit_entries(db, action="conversation.claim", target_id=cid)
    assert [e.actor_id for e in entries] == [str(admin.id), str(first.id)]
    assert entries[0].details["from"] == "agent" and entries[0].details["to"] == "agent"


def test_admins_assign_operators_do_not(client: TestClient, db: Session) -> None:
    cid, _ = waiting(client)
    target, target_headers = operator_headers(db)
    _, plain_headers = operator_headers(db)
    _, admin_headers = operator_headers(db, role=OperatorRole.ADMIN)
    body = {"operator_id": str(target.id)}
    assert_error(client.post(f"{OPS}/{cid}/assign", json=body, headers=plain_headers), 403)
    assigned = client.post(f"{OPS}/{cid}/assign", json=body, headers=admin_headers)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["assigned_operator_id"] == str(target.id)
    nobody = {"operator_id": str(uuid.uuid4())}
    assert_error(client.post(f"{OPS}/{cid}/assign", json=nobody, headers=admin_headers), 404)
    mine = client.get("/v1/operator/inbox?view=mine", headers=target_headers).json()
    assert [i["conversation_id"] for i in mine["items"]] == [cid] and mine["mine_count"] == 1
    assert len(audit_entries(db, action="conversation.assign", target_id=cid)) == 1


def test_hand_back_lets_the_bot_answer_again(client: TestClient, db: Session) -> None:
    cid, widget = waiting(client)
    _, headers = operator_headers(db)
    # An unclaimed waiting conversation: any operator may return it to the bot.
    back = client.post(f"{OPS}/{cid}/hand-back", headers=headers)
    assert back.status_code == 200 and back.json()["state"] == "bot"
    assert back.json()["message"]["text"] == BOT_BACK_NOTICE
    assert_error(client.post(f"{OPS}/{cid}/hand-back", headers=headers), 409, "conflict")
    assert_error(client.post(f"{OPS}/{cid}/claim", headers=headers), 409, "conflict")
    answered = post(client, cid, widget, "thanks, bot")
    assert answered.status_code == 503 and answered.json()["error"]["code"] == "no_model_deployed"


def test_replying_before_claiming_is_refused(client: TestClient, db: Session) -> None:
    cid, _ = waiting(client)
    _, headers = operator_headers(db)
    response = client.post(f"{OPS}/{cid}/messages", json={"text": "hi"}, headers=headers)
    assert_error(response, 409, "conflict")
    bot_cid, _ = start(client)
    assert_error(client.post(f"{OPS}/{bot_cid}/claim", headers=headers), 409)
    assert_error(client.post(f"{OPS}/{uuid.uuid4()}/claim", headers=headers), 404)
    assert_error(client.post(f"{OPS}/{cid}/claim"), 401)


def test_agent_text_limits_are_the_widgets(client: TestClient, db: Session) -> None:
    cid, _ = waiting(client)
    _, headers = operator_headers(db)
    client.post(f"{OPS}/{cid}/claim", headers=headers)
    too_long = client.post(f"{OPS}/{cid}/messages", json={"text": "x" * 2001}, headers=headers)
    assert_error(too_long, 422, "message_too_long")
    blank = client.post(f"{OPS}/{cid}/messages", json={"text": "\u200b "}, headers=headers)
    assert_error(blank, 422, "empty_message")


def test_inbox_views_and_counts(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    before = client.get("/v1/operator/inbox", headers=headers).json()["waiting_count"]
    older, _ = waiting(client, reason="customer_request")
    newer, _ = waiting(client, reason="billing question")
    inbox = client.get("/v1/operator/inbox?view=waiting&limit=200", headers=headers).json()
    assert inbox["waiting_count"] == before + 2 and inbox["mine_count"] == 0
    ids = [i["conversation_id"] for i in inbox["items"]]
    assert ids.index(older) < ids.index(newer)  # oldest first
    item = next(i for i in inbox["items"] if i["conversation_id"] == older)
    assert item["state"] == "waiting" and item["handoff_reason"] == "customer_request"
    assert item["last_customer_text"] == "my parcel is lost"
    assert item["waiting_seconds"] is not None and item["waiting_seconds"] >= 0

    client.post(f"{OPS}/{older}/claim", headers=headers)
    after = client.get("/v1/operator/inbox?view=mine", headers=headers).json()
    assert after["waiting_count"] == before + 1 and after["mine_count"] == 1
    mine = after["items"][0]
    assert mine["conversation_id"] == older and mine["assigned_operator_email"] is not None
    all_ids = [
        i["conversation_id"]
        for i in client.get("/v1/operator/inbox?view=all&limit=200", headers=headers).json()[
            "items"
        ]
    ]
    assert older in all_ids and newer in all_ids
    client.post(f"{OPS}/{older}/resolve", headers=headers)
    resolved = client.get("/v1/operator/inbox?view=resolved", headers=headers).json()
    assert resolved["items"][0]["conversation_id"] == older
    assert_error(client.get("/v1/operator/inbox?view=nope", headers=headers), 422)


def test_widget_events_refuse_another_conversations_token(client: TestClient) -> None:
    cid, _ = start(client)
    _, other = start(client)
    response = client.get(f"/v1/widget/conversations/{cid}/events", headers=other)
    assert_error(response, 403, "forbidden")
    assert_error(client.get(f"/v1/widget/conversations/{cid}/events"), 401)


@pytest.fixture
def limited_client(
    tmp_path: Path, pg_url: str, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path,
        database={"url": pg_url},
        auth={"secret_key": TEST_SECRET},
        rate_limit={"per_conversation_per_minute": 3},
    )
    with TestClient(create_app(settings, session_factory=session_factory)) as test_client:
        yield test_client


@pytest.mark.usefixtures("steady_minute")
def test_operator_messages_are_rate_limited_per_operator(
    limited_client: TestClient, db: Session
) -> None:
    client = limited_client
    cid, _ = waiting(client)
    _, headers = operator_headers(db)
    _, other_headers = operator_headers(db, role=OperatorRole.ADMIN)
    client.post(f"{OPS}/{cid}/claim", headers=headers)
    for n in range(3):
        sent = client.post(f"{OPS}/{cid}/messages", json={"text": f"m{n}"}, headers=headers)
        assert sent.status_code == 201, sent.text
    refused = client.post(f"{OPS}/{cid}/messages", json={"text": "m3"}, headers=headers)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    # Counted per operator: an admin in the same conversation still may write.
    ok = client.post(f"{OPS}/{cid}/messages", json={"text": "admin"}, headers=other_headers)
    assert ok.status_code == 201
