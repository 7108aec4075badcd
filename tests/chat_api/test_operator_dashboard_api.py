"""The operator endpoints the dashboard adds: metrics over time (with thresholds and
promotions), promotion and rollback (admins, audited, the bundle loaded first), and runs."""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from feedback.models import DistillRun, ModelAliasEvent, OperatorRole, RunStatus, RunTrigger
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.ratings import RatingRepository
from tests.fixtures.operators import (
    add_assistant_reply,
    assert_error,
    audit_entries,
    make_conversation,
    operator_headers,
)

UTC = dt.UTC
BASE = dt.datetime(2003, 3, 1, tzinfo=UTC)


def test_series_buckets_the_window_and_draws_thresholds_and_promotions(
    client: TestClient, db: Session
) -> None:
    _, headers = operator_headers(db)
    for hour, thumbs, latency in [(1, 1, 100.0), (1, -1, 300.0), (3, 1, 50.0)]:
        conversation = make_conversation(db, created_at=BASE + dt.timedelta(hours=hour))
        reply = add_assistant_reply(
            db,
            conversation,
            "ok",
            model_version="mv-s",
            latency_ms=latency,
            created_at=BASE + dt.timedelta(hours=hour, minutes=5),
        )
        RatingRepository(db).rate_message(reply, thumbs=thumbs)
    repo = ModelVersionRepository(db)
    repo.register(version_id="mv-s", bundle_uri="/nowhere", checksum="0" * 64)
    repo.set_alias(PRODUCTION, "mv-s", reason="test")
    event = db.query(ModelAliasEvent).filter_by(model_version_id="mv-s").one()
    event.at = BASE + dt.timedelta(hours=2, minutes=30)
    db.flush()

    response = client.get(
        "/v1/operator/metrics/series",
        params={
            "since": BASE.isoformat(),
            "until": (BASE + dt.timedelta(hours=4)).isoformat(),
            "buckets": 4,
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bucket_seconds"] == 3600
    points = body["points"]
    assert [p["assistant_replies"] for p in points] == [0, 2, 0, 1]
    assert [p["positive_rate"] for p in points] == [None, 0.5, None, 1.0]
    assert points[1]["latency_p95_ms"] == 290.0  # linear interpolation between 100 and 300
    assert body["thresholds"] == {
        "min_positive_rate": 0.7,
        "min_intent_accuracy": 0.8,
        "max_handoff_rate": 0.3,
        "max_latency_p95_ms": 500.0,
        "max_fallback_rate": 0.2,
    }
    assert [p["model_version_id"] for p in body["promotions"]] == ["mv-s"]


def test_series_refuses_an_empty_range(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    response = client.get(
        "/v1/operator/metrics/series",
        params={"since": BASE.isoformat(), "until": BASE.isoformat()},
        headers=headers,
    )
    assert_error(response, 422, "empty_range")


def test_promote_and_rollback_need_an_admin(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    response = client.post(
        "/v1/operator/models/mv-x/promote", json={"reason": "try"}, headers=headers
    )
    assert_error(response, 403)
    assert_error(
        client.post("/v1/operator/models/rollback", json={"reason": "x"}, headers=headers), 403
    )


def test_an_unusable_bundle_is_not_promoted(client: TestClient, db: Session) -> None:
    _admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    repo = ModelVersionRepository(db)
    repo.register(version_id="mv-broken", bundle_uri="/no/such/bundle", checksum="0" * 64)
    response = client.post(
        "/v1/operator/models/mv-broken/promote", json={"reason": "try"}, headers=headers
    )
    assert_error(response, 409, "bundle_unusable")
    assert repo.resolve_alias(PRODUCTION) is None
    assert audit_entries(db, action="model.promote") == []
    assert_error(
        client.post("/v1/operator/models/nope/promote", json={"reason": "x"}, headers=headers), 404
    )


def test_rollback_without_history_is_a_conflict(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db, role=OperatorRole.ADMIN)
    response = client.post("/v1/operator/models/rollback", json={"reason": "x"}, headers=headers)
    assert_error(response, 409, "nothing_to_roll_back")


def test_production_history_newest_first(client: TestClient, db: Session) -> None:
    _, headers = operator_headers(db)
    repo = ModelVersionRepository(db)
    for version in ("mv-a", "mv-b"):
        repo.register(version_id=version, bundle_uri="/x", checksum="0" * 64)
        repo.set_alias(PRODUCTION, version, reason=f"to {version}")
    history = client.get("/v1/operator/models/history", headers=headers).json()
    assert [(e["model_version_id"], e["previous_version_id"]) for e in history] == [
        ("mv-b", "mv-a"),
        ("mv-a", None),
    ]


def _run(db: Session, status: RunStatus) -> DistillRun:
    run = DistillRun(
        trigger=RunTrigger.MANUAL.value, status=status.value, stage="stage1", progress=0.25
    )
    db.add(run)
    db.flush()
    return run


def test_runs_are_listed_and_an_active_one_cancelled(client: TestClient, db: Session) -> None:
    finished = _run(db, RunStatus.SUCCEEDED)
    active = _run(db, RunStatus.RUNNING)
    _, op_headers = operator_headers(db)
    listed = client.get("/v1/operator/runs", headers=op_headers).json()
    assert {r["id"] for r in listed} >= {str(finished.id), str(active.id)}
    one = client.get(f"/v1/operator/runs/{active.id}", headers=op_headers).json()
    assert (one["status"], one["stage"], one["progress"]) == ("running", "stage1", 0.25)
    assert_error(client.post(f"/v1/operator/runs/{active.id}/cancel", headers=op_headers), 403)

    admin, headers = operator_headers(db, role=OperatorRole.ADMIN)
    cancelled = client.post(f"/v1/operator/runs/{active.id}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    db.expire_all()
    assert db.get(DistillRun, active.id).active_slot is None  # type: ignore[union-attr]
    [entry] = audit_entries(db, action="run.cancel", target_id=str(active.id))
    assert entry.actor_id == str(admin.id)
    again = client.post(f"/v1/operator/runs/{finished.id}/cancel", headers=headers)
    assert_error(again, 409)
    assert_error(client.get(f"/v1/operator/runs/{uuid.uuid4()}", headers=headers), 404)
