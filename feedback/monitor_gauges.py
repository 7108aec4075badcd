"""Prometheus gauges of the monitor: the figures it judged, the thresholds, the armed state,
and a count of its decisions. In a registry the caller owns (the worker serves it when
`worker.metrics_port` is set), so importing this sets up nothing global."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from feedback.models import MonitorEvaluation
from feedback.monitor_rules import Rule

# Figures shown besides the judged ones (no threshold of their own).
EXTRA_FIGURES = (
    "latency_p50_ms",
    "assistant_replies",
    "thumbs_up",
    "thumbs_down",
    "handed_off",
    "first_agent_replies",
    "first_agent_reply_p50_s",
    "first_agent_reply_p95_s",
)


class MonitorGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.figure = Gauge(
            "chatdistill_monitor_figure",
            "The monitor's latest window figure per model version.",
            ["model_version", "metric"],
            registry=registry,
        )
        self.threshold = Gauge(
            "chatdistill_monitor_threshold",
            "The monitor's threshold per metric (bound), and where it re-arms (rearm_at).",
            ["metric", "kind"],
            registry=registry,
        )
        self.armed = Gauge(
            "chatdistill_monitor_armed",
            "1 while a metric may fire for a model version, 0 after it fired until it recovers.",
            ["model_version", "metric"],
            registry=registry,
        )
        self.decisions = Counter(
            "chatdistill_monitor_decisions",
            "Monitor decisions by kind.",
            ["decision"],
            registry=registry,
        )

    def observe(self, evaluation: MonitorEvaluation, rules: list[Rule]) -> None:
        version = evaluation.model_version
        for rule in rules:
            self.threshold.labels(rule.metric, "bound").set(rule.bound)
            self.threshold.labels(rule.metric, "rearm_at").set(rule.rearm_at)
            self.armed.labels(version, rule.metric).set(
                1.0 if evaluation.armed.get(rule.metric, True) else 0.0
            )
        for metric in [*(r.metric for r in rules), *EXTRA_FIGURES]:
            value = evaluation.figures.get(metric)
            if value is not None:
                self.figure.labels(version, metric).set(float(value))
        self.decisions.labels(evaluation.decision).inc()
