"""Operator API: the metrics summary (computed independently in the test) and the models list."""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from feedback import handoff
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.ratings import RatingRepository
from tests.fixtures.operators import (
    add_assistant_reply,
    add_customer_message,
    assert_error,
    make_conversation,
    operator_headers,
    set_rating_time,
)

UTC = dt.UTC


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
    handoff.request_human(db, c2.id, reason="customer_request")

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
    handoff.request_human(db, outside.id, reason="customer_request")
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
    assert response.json() == []


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
