"""The monitor's rules, as pure logic: which figure, which bound, how many samples, and the
hysteresis that turns a window's figures into breaches, firings and re-arms.

A rule is *armed* until it fires. It fires when armed and its figure is past the bound (with
enough samples); it then stays disarmed, however the figure moves around the bound, until the
figure recovers past bound + margin (for a minimum) or bound - margin (for a maximum). A figure
with too few samples neither fires nor re-arms. No database and no clock here: the tick that
uses this lives in `feedback.monitor_loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from feedback.loop_settings import MonitorSettings
from feedback.monitor import WindowMetrics

Kind = Literal["min", "max"]
Family = Literal["accuracy", "latency"]


@dataclass(frozen=True)
class Rule:
    metric: str  # the WindowMetrics field
    kind: Kind  # "min": breached below the bound; "max": above it
    bound: float
    margin: float
    samples_field: str  # the WindowMetrics count the figure is computed from
    min_samples: int
    family: Family  # accuracy breaches retrain; latency breaches compress

    @property
    def rearm_at(self) -> float:
        return self.bound + self.margin if self.kind == "min" else self.bound - self.margin

    def breached(self, value: float) -> bool:
        return value < self.bound if self.kind == "min" else value > self.bound

    def recovered(self, value: float) -> bool:
        return value >= self.rearm_at if self.kind == "min" else value <= self.rearm_at

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bound": self.bound,
            "margin": self.margin,
            "rearm_at": self.rearm_at,
            "min_samples": self.min_samples,
            "family": self.family,
        }


def rules_from(settings: MonitorSettings) -> list[Rule]:
    s = settings
    return [
        Rule(
            "positive_rate",
            "min",
            s.min_positive_rate,
            s.positive_rate_margin,
            "rated_thumbs",
            s.min_samples,
            "accuracy",
        ),
        Rule(
            "csat_mean",
            "min",
            s.min_csat_mean,
            s.csat_margin,
            "csat_count",
            s.min_samples,
            "accuracy",
        ),
        Rule(
            "intent_accuracy",
            "min",
            s.min_intent_accuracy,
            s.intent_accuracy_margin,
            "verified_intents",
            s.min_verified_intents,
            "accuracy",
        ),
        Rule(
            "handoff_rate",
            "max",
            s.max_handoff_rate,
            s.handoff_rate_margin,
            "conversations",
            s.min_samples,
            "accuracy",
        ),
        Rule(
            "fallback_rate",
            "max",
            s.max_fallback_rate,
            s.fallback_rate_margin,
            "assistant_replies",
            s.min_samples,
            "accuracy",
        ),
        Rule(
            "latency_p95_ms",
            "max",
            s.max_latency_p95_ms,
            s.latency_margin_ms,
            "assistant_replies",
            s.min_samples,
            "latency",
        ),
    ]


def samples(figures: WindowMetrics, samples_field: str) -> int:
    if samples_field == "rated_thumbs":
        return figures.thumbs_up + figures.thumbs_down
    value = getattr(figures, samples_field)
    return int(value)


@dataclass
class Assessment:
    breaches: list[str] = field(default_factory=list)  # past the bound, enough samples
    fired: list[str] = field(default_factory=list)  # breached while armed
    insufficient: list[str] = field(default_factory=list)  # too few samples to judge
    armed: dict[str, bool] = field(default_factory=dict)  # state if the firings are acted on
    values: dict[str, float | None] = field(default_factory=dict)  # the figures judged

    def families(self, rules: list[Rule]) -> set[Family]:
        by_name = {r.metric: r for r in rules}
        return {by_name[m].family for m in self.fired}


def assess(figures: WindowMetrics, rules: list[Rule], armed_before: dict[str, bool]) -> Assessment:
    """Breaches and firings of one window, and the armed state after acting on the firings."""
    out = Assessment()
    for rule in rules:
        armed = armed_before.get(rule.metric, True)
        value = getattr(figures, rule.metric)
        out.values[rule.metric] = value
        if value is None or samples(figures, rule.samples_field) < rule.min_samples:
            out.insufficient.append(rule.metric)
            out.armed[rule.metric] = armed
            continue
        if rule.breached(float(value)):
            out.breaches.append(rule.metric)
            if armed:
                out.fired.append(rule.metric)
                armed = False
        elif not armed and rule.recovered(float(value)):
            armed = True
        out.armed[rule.metric] = armed
    return out
