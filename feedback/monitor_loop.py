"""One monitor tick: look at each serving version's window, decide, record, maybe open a run.

The production version's firings open a run (accuracy-family firings an incremental one,
latency-only firings a compression one) unless the monitor is disabled, the last run it opened
is within the cooldown, or a run is already active (the database's unique slot decides that,
not a prior check). Other versions that served in the window (a canary, the previous champion
draining) are recorded as observations. Every look is a `MonitorEvaluation` row with its
numbers; the caller's unit of work commits, then dispatches the run it got back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from feedback.loop_settings import MonitorSettings
from feedback.models import DistillRun, MonitorDecision, MonitorEvaluation, RunTrigger, utcnow
from feedback.monitor import window_metrics
from feedback.monitor_gauges import MonitorGauges
from feedback.monitor_rules import Assessment, Rule, assess, rules_from
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.monitor import MonitorRepository
from feedback.repositories.runs import RunRepository

RunConfig = Callable[[RunTrigger], dict[str, Any]]
MAX_OBSERVED_VERSIONS = 5


@dataclass
class TickResult:
    evaluations: list[MonitorEvaluation] = field(default_factory=list)
    opened: DistillRun | None = None


def window_start(
    repo: MonitorRepository, settings: MonitorSettings, version: str, now: dt.datetime
) -> dt.datetime | None:
    """The later of "T minutes ago" and "the N-th newest rated reply" (None: unbounded)."""
    starts: list[dt.datetime] = []
    if settings.window_minutes is not None:
        starts.append(now - dt.timedelta(minutes=settings.window_minutes))
    if settings.window_replies is not None:
        nth = repo.nth_rated_reply_at(version, settings.window_replies, now)
        if nth is not None:
            starts.append(nth)
    return max(starts) if starts else None


def tick(
    session: Session,
    settings: MonitorSettings,
    run_config: RunConfig,
    *,
    now: dt.datetime | None = None,
    gauges: MonitorGauges | None = None,
) -> TickResult:
    now = now or utcnow()
    repo = MonitorRepository(session)
    repo.lock_tick()
    rules = rules_from(settings)
    production = ModelVersionRepository(session).resolve_alias(PRODUCTION)
    versions = [production.id] if production is not None else []
    if settings.window_minutes is not None:
        recent = now - dt.timedelta(minutes=settings.window_minutes)
        for version in repo.versions_replying(recent, now, MAX_OBSERVED_VERSIONS):
            if version not in versions:
                versions.append(version)

    result = TickResult()
    for version in versions:
        is_production = production is not None and version == production.id
        since = window_start(repo, settings, version, now)
        figures = window_metrics(session, since=since, until=now, model_version=version)
        previous = repo.latest(version)
        armed_before = dict(previous.armed) if previous is not None else {}
        assessment = assess(figures, rules, armed_before)
        if is_production:
            decision, trigger, reason, run = _decide(
                session, settings, rules, assessment, armed_before, run_config, now, version
            )
            result.opened = run or result.opened
        else:
            decision = MonitorDecision.OBSERVED if assessment.breaches else MonitorDecision.NONE
            trigger, reason, run = None, "not the production version: recorded only", None
            assessment.armed = {r.metric: armed_before.get(r.metric, True) for r in rules}
        evaluation = repo.record(
            MonitorEvaluation(
                at=now,
                model_version=version,
                is_production=is_production,
                window_since=since,
                window_until=now,
                figures=figures.model_dump(mode="json"),
                thresholds={r.metric: r.as_json() for r in rules},
                breaches=assessment.breaches,
                insufficient=assessment.insufficient,
                armed=assessment.armed,
                decision=decision.value,
                trigger=trigger,
                reason=reason[:500],
                run_id=run.id if run is not None else None,
            )
        )
        result.evaluations.append(evaluation)
        if gauges is not None:
            gauges.observe(evaluation, rules)
    return result


def _decide(
    session: Session,
    settings: MonitorSettings,
    rules: list[Rule],
    assessment: Assessment,
    armed_before: dict[str, bool],
    run_config: RunConfig,
    now: dt.datetime,
    version: str,
) -> tuple[MonitorDecision, str | None, str, DistillRun | None]:
    """What the production version's look leads to. When a firing cannot be acted on, the
    metrics it fired stay armed, so that it fires again once it can."""
    if not assessment.fired:
        if assessment.breaches:
            return MonitorDecision.DISARMED, None, _breach_text(assessment, rules), None
        return MonitorDecision.NONE, None, "every figure within its threshold", None
    families = assessment.families(rules)
    trigger = RunTrigger.ACCURACY if "accuracy" in families else RunTrigger.LATENCY
    fired = _breach_text(assessment, rules, only=assessment.fired)

    def keep_armed() -> None:
        for metric in assessment.fired:
            assessment.armed[metric] = armed_before.get(metric, True)

    if not settings.enabled:
        keep_armed()
        return MonitorDecision.DISABLED, trigger.value, f"{fired}; monitor disabled", None
    last = MonitorRepository(session).last_opened_at()
    if last is not None and now - last < dt.timedelta(minutes=settings.cooldown_minutes):
        keep_armed()
        left = dt.timedelta(minutes=settings.cooldown_minutes) - (now - last)
        return (
            MonitorDecision.COOLDOWN,
            trigger.value,
            f"{fired}; cooldown, {int(left.total_seconds())} s left",
            None,
        )
    detail = {"fired": assessment.fired, "breaches": assessment.breaches, "reason": fired}
    run = RunRepository(session).open_run(trigger.value, detail, run_config(trigger))
    if run is None:
        keep_armed()
        return MonitorDecision.RUN_ACTIVE, trigger.value, f"{fired}; a run is active", None
    # A run that finished while this tick looked may have promoted a new version: the figures
    # judged are then the old one's. A run moves the alias before it finishes, and the open
    # above saw it finished, so the alias read now shows the move: take the run back.
    current = ModelVersionRepository(session).resolve_alias(PRODUCTION, fresh=True)
    if current is None or current.id != version:
        session.delete(run)
        session.flush()
        keep_armed()
        moved = current.id if current is not None else "nothing"
        return (
            MonitorDecision.RUN_ACTIVE,
            trigger.value,
            f"{fired}; production moved to {moved} during this tick: judged on the next one",
            None,
        )
    return MonitorDecision.OPENED_RUN, trigger.value, f"{fired}; opened run {run.id}", run


def _breach_text(assessment: Assessment, rules: list[Rule], only: list[str] | None = None) -> str:
    by_name = {r.metric: r for r in rules}
    parts = []
    for metric in only if only is not None else assessment.breaches:
        rule = by_name[metric]
        value = assessment.values.get(metric)
        sign = "<" if rule.kind == "min" else ">"
        parts.append(f"{metric} {value:.4g} {sign} {rule.kind} {rule.bound:g}")
    return ", ".join(parts)
