"""The monitor's handoff figures through the real handoff flow (`feedback.handoff`) on
PostgreSQL: a resolved case still counts as handed off, the wait for the first agent reply is
measured from the handoff, and the operator metrics summary and series carry both."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from feedback import handoff
from feedback.models import Conversation, MessageRole, Operator, utcnow
from feedback.monitor import window_metrics
from feedback.repositories.conversations import ConversationRepository
from tests.fixtures.operators import make_operator, operator_headers


def _answered_after(db: Session, operator: Operator, wait: dt.timedelta) -> Conversation:
    repo = ConversationRepository(db)
    conv = repo.create(site="shop")
    repo.add_message(conv, role=MessageRole.CUSTOMER, text="I need a person please")
    handoff.request_human(db, conv.id, reason="customer_request")
    conv.handed_off_at = utcnow() - wait  # the customer has waited `wait`
    handoff.claim(db, conv.id, operator)
    handoff.agent_reply(db, conv.id, operator, "Hi, I am here to help.")
    handoff.agent_reply(db, conv.id, operator, "A second message does not move the figure.")
    return conv


def test_time_to_first_agent_reply_and_handoffs_that_were_resolved(db: Session) -> None:
    since = utcnow() - dt.timedelta(minutes=1)
    operator, _ = make_operator(db)
    waits = [30, 60, 90, 120, 600]
    conversations = [_answered_after(db, operator, dt.timedelta(seconds=s)) for s in waits]
    handoff.resolve(db, conversations[0].id, operator)
    handoff.hand_back(db, conversations[1].id, operator)
    unanswered = ConversationRepository(db).create(site="shop")
    handoff.request_human(db, unanswered.id, reason="low_confidence")
    ConversationRepository(db).create(site="shop")  # the bot handled this one
    db.flush()

    figures = window_metrics(db, since=since, until=utcnow() + dt.timedelta(seconds=5))
    assert figures.conversations == 7
    assert figures.handed_off == 6  # resolved and handed back ones included
    assert figures.handoff_rate == 6 / 7
    assert figures.first_agent_replies == 5  # the unanswered one has no wait yet
    assert figures.first_agent_reply_p50_s is not None
    assert figures.first_agent_reply_p95_s is not None
    assert abs(figures.first_agent_reply_p50_s - 90) < 5
    assert abs(figures.first_agent_reply_p95_s - 504) < 5  # 120 + 0.8 * (600 - 120)
    before = window_metrics(db, until=since)
    assert before.first_agent_replies == 0 and before.first_agent_reply_p50_s is None


def test_the_operator_metrics_summary_and_series_carry_the_handoff_figures(
    client: TestClient, db: Session
) -> None:
    since = utcnow() - dt.timedelta(minutes=1)
    operator, _ = make_operator(db)
    _answered_after(db, operator, dt.timedelta(seconds=45))
    db.commit()
    _, headers = operator_headers(db)
    until = (utcnow() + dt.timedelta(seconds=30)).isoformat()
    params = {"since": since.isoformat(), "until": until}
    summary = client.get("/v1/operator/metrics/summary", params=params, headers=headers)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["handed_off"] >= 1 and body["first_agent_replies"] >= 1
    assert body["first_agent_reply_p95_s"] >= 45
    series = client.get(
        "/v1/operator/metrics/series", params={**params, "buckets": 3}, headers=headers
    )
    assert series.status_code == 200, series.text
    points = series.json()["points"]
    assert sum(p["first_agent_replies"] for p in points) >= 1
    assert sum(p["handed_off"] for p in points) >= 1
    answered = [p for p in points if p["first_agent_replies"]]
    assert answered[-1]["first_agent_reply_p50_s"] >= 45
