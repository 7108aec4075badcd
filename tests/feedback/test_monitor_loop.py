"""The continual loop's monitor on the real store: windows per model version, minimum samples,
hysteresis (fire once, re-arm only past the margin), cooldown, one active run, and a recorded
decision with its numbers for every look."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.loop_settings import MonitorSettings
from feedback.models import (
    Conversation,
    DistillRun,
    Message,
    MessageRole,
    MonitorEvaluation,
    Rating,
    RunStatus,
    RunTrigger,
    utcnow,
)
from feedback.monitor_gauges import MonitorGauges
from feedback.monitor_loop import tick
from feedback.monitor_rules import assess, rules_from
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.runs import RunRepository

SETTINGS = MonitorSettings(
    min_samples=10,
    min_verified_intents=5,
    window_replies=20,
    window_minutes=60,
    cooldown_minutes=30,
    min_positive_rate=0.7,
    positive_rate_margin=0.1,
    max_latency_p95_ms=500,
)


def config_of(trigger: RunTrigger) -> dict[str, Any]:
    return {"for": trigger.value}


def serve(db: Session, version: str) -> None:
    repo = ModelVersionRepository(db)
    repo.register(version_id=version, bundle_uri=f"/b/{version}", checksum="0" * 64)
    repo.set_alias(PRODUCTION, version, reason="test")


def replies(
    db: Session,
    version: str,
    *,
    up: int,
    down: int,
    at: dt.datetime,
    latency_ms: float = 100.0,
) -> None:
    """`up + down` rated replies of `version`, one conversation each, a second apart."""
    for i, thumbs in enumerate([1] * up + [-1] * down):
        when = at + dt.timedelta(seconds=i)
        conv = Conversation(created_at=when)
        db.add(conv)
        db.flush()
        db.add(Message(conversation_id=conv.id, seq=1, role=MessageRole.CUSTOMER.value,
                       text="hi", created_at=when))  # fmt: skip
        reply = Message(conversation_id=conv.id, seq=2, role=MessageRole.ASSISTANT.value,
                        text="hello", model_version=version, latency_ms=latency_ms,
                        created_at=when)  # fmt: skip
        db.add(reply)
        db.flush()
        db.add(Rating(conversation_id=conv.id, message_id=reply.id, thumbs=thumbs))
    db.flush()


def evaluations(db: Session) -> list[MonitorEvaluation]:
    return list(db.scalars(select(MonitorEvaluation).order_by(MonitorEvaluation.id)))


def test_too_few_samples_neither_fire_nor_open_a_run(db: Session) -> None:
    now = utcnow()
    serve(db, "mv-1")
    replies(db, "mv-1", up=1, down=8, at=now - dt.timedelta(minutes=10))  # 9 < min_samples
    result = tick(db, SETTINGS, config_of, now=now)
    [row] = result.evaluations
    assert result.opened is None
    assert row.decision == "none" and "positive_rate" in row.insufficient
    assert row.figures["thumbs_down"] == 8 and row.armed["positive_rate"] is True


def test_a_breach_opens_one_run_then_hysteresis_and_cooldown_hold(db: Session) -> None:
    now = utcnow()
    serve(db, "mv-1")
    replies(db, "mv-1", up=4, down=8, at=now - dt.timedelta(minutes=20))  # rate 0.33
    first = tick(db, SETTINGS, config_of, now=now)
    [row] = first.evaluations
    assert row.decision == "opened_run" and row.trigger == "accuracy"
    assert row.breaches == ["positive_rate"] and row.armed["positive_rate"] is False
    assert "positive_rate 0.3333 < min 0.7" in row.reason
    assert row.thresholds["positive_rate"]["rearm_at"] == pytest.approx(0.8)
    run = first.opened
    assert run is not None and row.run_id == run.id
    assert (run.trigger, run.status, run.config) == ("accuracy", "queued", {"for": "accuracy"})
    assert run.trigger_detail["fired"] == ["positive_rate"]

    # Still breached: disarmed, no second run.
    again = tick(db, SETTINGS, config_of, now=now + dt.timedelta(minutes=1))
    assert again.opened is None and again.evaluations[0].decision == "disarmed"

    # The run ends; the figure climbs past the bound but not past the margin: still disarmed.
    run.status = RunStatus.SUCCEEDED.value
    replies(db, "mv-1", up=14, down=2, at=now + dt.timedelta(minutes=2))  # last 20: 14/20=0.7
    partial = tick(db, SETTINGS, config_of, now=now + dt.timedelta(minutes=3))
    assert partial.evaluations[0].figures["positive_rate"] == pytest.approx(0.7)
    assert partial.evaluations[0].armed["positive_rate"] is False

    # Recovers past bound + margin (0.8): re-armed.
    replies(db, "mv-1", up=20, down=0, at=now + dt.timedelta(minutes=4))
    recovered = tick(db, SETTINGS, config_of, now=now + dt.timedelta(minutes=5))
    assert recovered.evaluations[0].armed["positive_rate"] is True
    assert recovered.evaluations[0].decision == "none"

    # A new breach inside the cooldown is recorded, stays armed, opens nothing.
    replies(db, "mv-1", up=0, down=20, at=now + dt.timedelta(minutes=6))
    cooling = tick(db, SETTINGS, config_of, now=now + dt.timedelta(minutes=7))
    [cool] = cooling.evaluations
    assert cooling.opened is None and cool.decision == "cooldown"
    assert cool.armed["positive_rate"] is True and "s left" in cool.reason

    # After the cooldown it fires.
    later = tick(db, SETTINGS, config_of, now=now + dt.timedelta(minutes=31))
    assert later.opened is not None and later.evaluations[0].decision == "opened_run"


def test_a_breach_while_a_run_is_active_waits_armed(db: Session) -> None:
    now = utcnow()
    serve(db, "mv-1")
    active = RunRepository(db).open_run("manual", {}, {})
    assert active is not None
    replies(db, "mv-1", up=0, down=12, at=now - dt.timedelta(minutes=5))
    [row] = tick(db, SETTINGS, config_of, now=now).evaluations
    assert row.decision == "run_active" and row.armed["positive_rate"] is True
    assert db.scalars(select(DistillRun)).all() == [active]


def test_latency_alone_opens_a_compression_run_and_disabled_records_only(db: Session) -> None:
    now = utcnow()
    serve(db, "mv-1")
    replies(db, "mv-1", up=12, down=0, at=now - dt.timedelta(minutes=5), latency_ms=900.0)
    disabled = SETTINGS.model_copy(update={"enabled": False})
    [row] = tick(db, disabled, config_of, now=now).evaluations
    assert (row.decision, row.trigger, row.armed["latency_p95_ms"]) == ("disabled", "latency", True)
    result = tick(db, SETTINGS, config_of, now=now + dt.timedelta(seconds=1))
    assert result.opened is not None and result.opened.trigger == "latency"
    assert result.opened.config == {"for": "latency"}


def test_windows_are_per_version_and_other_versions_are_observed(db: Session) -> None:
    now = utcnow()
    replies(db, "mv-old", up=0, down=12, at=now - dt.timedelta(minutes=30))
    serve(db, "mv-new")
    replies(db, "mv-new", up=12, down=0, at=now - dt.timedelta(minutes=3))
    # Replies older than the time window do not count.
    replies(db, "mv-new", up=0, down=30, at=now - dt.timedelta(minutes=90))
    registry = CollectorRegistry()
    result = tick(db, SETTINGS, config_of, now=now, gauges=MonitorGauges(registry))
    by_version = {e.model_version: e for e in result.evaluations}
    assert by_version["mv-new"].decision == "none" and by_version["mv-new"].is_production
    assert by_version["mv-new"].figures["thumbs_down"] == 0
    assert by_version["mv-old"].decision == "observed" and not by_version["mv-old"].is_production
    assert result.opened is None
    figure = registry.get_sample_value(
        "chatdistill_monitor_figure", {"model_version": "mv-old", "metric": "positive_rate"}
    )
    assert figure == 0.0
    bound = registry.get_sample_value(
        "chatdistill_monitor_threshold", {"metric": "positive_rate", "kind": "bound"}
    )
    assert bound == 0.7
    assert len(evaluations(db)) == 2


def test_the_window_is_the_last_n_rated_replies() -> None:
    """Pure rule check: a metric with exactly min samples is judged; the margin re-arms."""
    rules = rules_from(SETTINGS)
    from feedback.monitor import WindowMetrics

    def figures(up: int, down: int) -> WindowMetrics:
        return WindowMetrics(
            since=None, until=None, model_version="v", conversations=up + down,
            customer_messages=up + down, assistant_replies=up + down, thumbs_up=up,
            thumbs_down=down, positive_rate=up / (up + down), csat_count=0, csat_mean=None,
            handed_off=0, handoff_rate=0.0, verified_intents=0, intent_accuracy=None,
            latency_p50_ms=10.0, latency_p95_ms=20.0,
        )  # fmt: skip

    fired = assess(figures(5, 5), rules, {})
    assert fired.fired == ["positive_rate"] and fired.armed["positive_rate"] is False
    held = assess(figures(8, 2), rules, fired.armed)  # 0.8 == rearm_at: recovered
    assert held.armed["positive_rate"] is True and "intent_accuracy" in held.insufficient


def test_a_version_promoted_during_the_tick_opens_no_run_for_the_old_one(db: Session) -> None:
    from sqlalchemy import update

    from feedback.models import ModelAlias

    now = utcnow()
    serve(db, "mv-1")
    replies(db, "mv-1", up=0, down=12, at=now - dt.timedelta(minutes=5))
    repo = ModelVersionRepository(db)
    repo.register(version_id="mv-2", bundle_uri="/b/mv-2", checksum="0" * 64)
    # A run promotes mv-2 and finishes while the tick looks: the row changes in the database,
    # the tick's first read (this session's copy, held here) still says mv-1.
    held = db.get(ModelAlias, PRODUCTION)
    assert held is not None and held.model_version_id == "mv-1"
    db.execute(
        update(ModelAlias)
        .where(ModelAlias.alias == PRODUCTION)
        .values(model_version_id="mv-2")
        .execution_options(synchronize_session=False)
    )
    result = tick(db, SETTINGS, config_of, now=now)
    [row] = [e for e in result.evaluations if e.is_production]
    assert result.opened is None and db.scalars(select(DistillRun)).all() == []
    assert row.model_version == "mv-1" and row.decision == "run_active"
    assert "production moved to mv-2 during this tick" in row.reason
    assert row.armed["positive_rate"] is True  # it fires again once it can
    assert repo.resolve_alias(PRODUCTION, fresh=True).id == "mv-2"  # type: ignore[union-attr]
    assert held.model_version_id == "mv-2"
