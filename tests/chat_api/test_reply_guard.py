"""The serving guard on a real tiny bundle: an unfit generated reply is replaced by the intent's
approved answer (set by an operator from a reply, audited), or handed off when the intent has
none; every stored reply records its source. The OpenAI-compatible route sends the same
decision (and stores nothing)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bundle_runtime.deploy import deploy_bundle
from bundle_runtime.guard import LOW_QUALITY, figures, guard_reply, unfit_reason
from feedback.models import ActorType, AuditEntry, Conversation, Message
from feedback.monitor import window_metrics
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.settings import Settings
from tests.fixtures.operators import assert_error, auth, make_api_key, operator_headers
from tests.fixtures.serving import VERSION, register, serving
from tests.fixtures.tiny_bundle import TinyBundle
from tests.fixtures.widget import post, start


def test_the_decision() -> None:
    assert unfit_reason("Your parcel ships today.", "stop", 0.9, 0.5) is None
    assert unfit_reason("Your parcel ships today.", "stop", 0.2, 0.5) == "low_reward"
    assert unfit_reason("you you you you you", "stop", 0.9, 0.5) == "degenerate_repeats"
    assert unfit_reason("Your parcel ships on", "length", 0.9, 0.0) == "degenerate_cut_off"
    policy = "Express delivery takes 1 to 2 business days for 9.90 euros."
    # Figures the approved answer (or the customer) states may be said; others may not.
    ok = "Express takes 1 to 2 business days and costs 9.90 euros."
    assert unfit_reason(ok, "stop", 0.9, 0.5, approved=policy) is None
    wrong = "Express takes 1 to 2 business days and costs 9 euros."
    assert unfit_reason(wrong, "stop", 0.9, 0.5, approved=policy) == "unsupported_figure"
    echo = "Your 3 parcels go express: 1 to 2 business days."
    assert unfit_reason(echo, "stop", 0.9, 0.5, approved=policy) == "unsupported_figure"
    assert (
        unfit_reason(echo, "stop", 0.9, 0.5, approved=policy, customer_text="my 3 parcels") is None
    )
    assert unfit_reason(wrong, "stop", 0.9, 0.5) is None  # no approved answer: nothing to hold to
    assert figures("4,90 euros at 8:00, order 0042; costs .9: euros") == {
        "4.90",
        "8:00",
        "0042",
        "9",
    }
    # A step list numbers its steps: those numbers are no figures (a reply with more steps
    # than the approved answer is not unfit for it), the figures inside the steps still are.
    steps = "Follow these steps:\n1. Log in.\n2) Open Orders. 3. Pay 9.90 euros within 14 days."
    assert figures(steps) == {"9.90", "14"}
    assert unfit_reason(steps, "stop", 0.9, 0.5, approved="Pay 9.90 euros within 14 days.") is None
    sent = guard_reply(text="x x x", handoff_reason=None, unfit="degenerate_repeats", approved="A")
    assert (sent.text, sent.source, sent.reason, sent.handoff_reason) == (
        "A", "approved", "degenerate_repeats", None,
    )  # fmt: skip
    alone = guard_reply(text="x", handoff_reason=None, unfit="low_reward", approved=None)
    assert alone.source == "handoff" and alone.handoff_reason == LOW_QUALITY
    oos = guard_reply(text="x", handoff_reason="out_of_scope", unfit=None, approved="A")
    assert oos.source == "handoff" and oos.handoff_reason == "out_of_scope"


def test_a_low_scoring_reply_sends_the_approved_answer_an_operator_set(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    operator, headers = operator_headers(db)
    # Every generated reply scores below 1.0: the guard stands in for all of them.
    with serving(settings, session_factory, guard_min_reward=1.0) as client:
        cid, widget = start(client)
        first = post(client, cid, widget, "where is my order").json()
        # No approved answer yet: a human takes over, and says why.
        assert first["handoff"] is True and first["reply"]["reply_source"] == "handoff"
        conversation = db.get(Conversation, uuid.UUID(cid))
        assert conversation is not None
        db.refresh(conversation)
        assert conversation.handoff_reason == LOW_QUALITY
        stored = db.get(Message, uuid.UUID(first["reply"]["id"]))
        assert stored is not None and stored.guard_reason == "low_reward"

        # The operator approves an answer for the intent, from a reply's text (redacted).
        url = "/v1/operator/approved-answers/track_order"
        bad = client.put(url, json={}, headers=headers)
        assert_error(bad, 422, "validation_error")
        text = "Your order is on its way; call 030 1234 5678 if it is late."
        put = client.put(url, json={"text": text}, headers=headers)
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "operator" and "[PHONE]" in put.json()["text"]
        listed = client.get("/v1/operator/approved-answers", headers=headers).json()
        assert [a["intent"] for a in listed] == ["track_order"]

        cid, widget = start(client)
        second = post(client, cid, widget, "where is my order").json()
        assert second["handoff"] is False
        assert second["reply"]["reply_source"] == "approved"
        assert second["reply"]["text"] == put.json()["text"]
        assert second["reply"]["intent"] == "track_order"

        # From a reply instead of text: the assistant message's words become the answer.
        reply_id = second["reply"]["id"]
        from_reply = client.put(
            "/v1/operator/approved-answers/refund", json={"message_id": reply_id}, headers=headers
        )
        assert from_reply.status_code == 200 and from_reply.json()["text"] == put.json()["text"]
        assert client.delete(url, headers=headers).status_code == 204
        assert_error(client.delete(url, headers=headers), 404, "not_found")
    # The monitor counts what the guard replaced: both replies here (one handed off).
    figures = window_metrics(db, model_version=VERSION)
    assert (figures.assistant_replies, figures.guarded_replies) == (2, 2)
    assert figures.approved_replies == 1 and figures.fallback_rate == 1.0
    actions = db.scalars(
        select(AuditEntry.action).where(AuditEntry.actor_id == str(operator.id))
    ).all()
    assert sorted(actions) == [
        "approved_answer.delete",
        "approved_answer.set",
        "approved_answer.set",
    ]


def test_fit_replies_are_sent_as_generated(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    ApprovedAnswerRepository(db).set("track_order", "An approved answer.", operator_id=None)
    db.flush()
    with serving(settings, session_factory) as client:
        cid, widget = start(client)
        body = post(client, cid, widget, "where is my order").json()
    assert body["reply"]["text"] == "your order is on its way"
    assert body["reply"]["reply_source"] == "generated"


def test_the_openai_route_sends_what_the_guard_lets_out(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    _, key = make_api_key(db)
    approved = "Your order is on its way; track it in the app."
    ApprovedAnswerRepository(db).set("track_order", approved, operator_id=None)
    db.flush()
    stored_before = db.scalar(select(func.count()).select_from(Message))
    chat = {"messages": [{"role": "user", "content": "where is my order"}]}
    # Every generated reply scores below 1.0: the approved answer stands in, as on the widget.
    with serving(settings, session_factory, guard_min_reward=1.0) as client:
        plain = client.post("/v1/chat/completions", headers=auth(key), json=chat)
        assert plain.status_code == 200, plain.text
        choice = plain.json()["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": approved}
        assert choice["finish_reason"] == "stop"
        assert plain.json()["usage"]["completion_tokens"] > 0  # what the model generated

        streamed = client.post(
            "/v1/chat/completions", headers=auth(key), json={**chat, "stream": True}
        )
        lines = [line for line in streamed.text.split("\n\n") if line]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == approved
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Without the guard's threshold the generated reply is fit and sent as it is.
    with serving(settings, session_factory) as client:
        fit = client.post("/v1/chat/completions", headers=auth(key), json=chat).json()
        assert fit["choices"][0]["message"]["content"] == "your order is on its way"
    # Nothing is stored for this route.
    assert db.scalar(select(func.count()).select_from(Message)) == stored_before


def test_a_cut_the_openai_client_asked_for_is_not_replaced(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    _, key = make_api_key(db)
    ApprovedAnswerRepository(db).set("track_order", "Track it in the app.", operator_id=None)
    db.flush()
    chat = {"messages": [{"role": "user", "content": "where is my order"}], "max_tokens": 2}
    with serving(settings, session_factory) as client:
        plain = client.post("/v1/chat/completions", headers=auth(key), json=chat).json()
        streamed = client.post(
            "/v1/chat/completions", headers=auth(key), json={**chat, "stream": True}
        )
    choice = plain["choices"][0]
    # The client's own limit cut the reply: it gets the cut reply, not the approved answer.
    assert choice["finish_reason"] == "length"
    assert plain["usage"]["completion_tokens"] == 2
    assert choice["message"]["content"].startswith("your")  # the generated reply, cut
    lines = [line for line in streamed.text.split("\n\n") if line][:-1]
    chunks = [json.loads(line[len("data: ") :]) for line in lines]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_deploying_a_bundle_seeds_its_approved_answers(
    tiny_bundle: TinyBundle, db: Session, tmp_path: Path
) -> None:
    repo = ApprovedAnswerRepository(db)
    repo.set("track_order", "Tracking is in the app.", operator_id=None)
    done = deploy_bundle(
        db, tiny_bundle.path, tmp_path / "bundles", alias="production", reason="test",
        actor_type=ActorType.CLI,
    )  # fmt: skip
    seeded = repo.get("refund")
    assert seeded is not None and seeded.source == "seed"
    assert seeded.text == "We will refund you within five days."
    assert seeded.model_version == done.manifest.model_version
    assert repo.text_for("track_order") == "Tracking is in the app."
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "model.promote")).all()[-1]
    assert entry.details["seeded_approved_answers"] == ["refund"]


def test_seeds_never_replace_an_operators_answer(db: Session) -> None:
    repo = ApprovedAnswerRepository(db)
    repo.set("refund", "Refunds take five days.", operator_id=None)
    seeded = repo.seed(
        {"refund": "seeded", "track_order": "Tracking is in the app."}, model_version="v1"
    )
    assert seeded == ["track_order"]
    assert repo.text_for("refund") == "Refunds take five days."
    assert repo.get("track_order") is not None and repo.get("track_order").source == "seed"  # type: ignore[union-attr]


def test_an_approved_answer_from_a_reply_that_does_not_exist_is_a_404(
    client: TestClient, db: Session
) -> None:
    # With `text` as well, the reply it names must still exist (this was a foreign-key 500).
    _, headers = operator_headers(db)
    response = client.put(
        "/v1/operator/approved-answers/refund",
        json={"message_id": str(uuid.uuid4()), "text": "Refunds take five days."},
        headers=headers,
    )
    assert_error(response, 404, "not_found")
    assert ApprovedAnswerRepository(db).get("refund") is None


def test_a_miscopied_identifier_becomes_the_customers_own() -> None:
    from bundle_runtime.guard import copy_identifiers

    reply = "Your purchase with the number 013842 is cancelled. Call 5550123 for help."
    ask = "please cancel purchase 3707955617"
    fixed = copy_identifiers(reply, ask, approved="Our line: 5550123.")
    assert fixed == "Your purchase with the number 3707955617 is cancelled. Call 5550123 for help."
    # Two numbers in the message, or none: no way to tell which is meant, nothing changes (and
    # the figure check then stops the reply).
    assert copy_identifiers(reply, "orders 3707955617 and 1234567") == reply
    assert copy_identifiers(reply, "cancel my purchase") == reply
    # Short figures and prices are not identifiers.
    assert copy_identifiers("Pay 9.90 within 14 days.", ask) == "Pay 9.90 within 14 days."
    assert (
        unfit_reason(fixed, "stop", 0.9, 0.5, approved="Our line: 5550123.", customer_text=ask)
        is None
    )
