"""Quality and latency figures over a time window, per model version or overall, or over a
series of contiguous windows (the dashboard's charts): rates and percentiles from the counts
that `feedback.repositories.monitor_figures` queries, one grouped query per figure family
whatever the number of windows.

The operator metrics summary and charts read these; so does the continual loop's monitor, which adds
thresholds and hysteresis (`feedback.monitor_rules`) and the recorded decisions of each tick
(`feedback.monitor_loop`).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy.orm import Session

from feedback.repositories.monitor_figures import (
    BucketCounts,
    MonitorFigureRepository,
    TimeBuckets,
)


class WindowMetrics(BaseModel):
    """Figures over one window; None where the window holds no data to compute it from."""

    since: dt.datetime | None
    until: dt.datetime | None
    model_version: str | None
    conversations: int
    customer_messages: int
    assistant_replies: int
    thumbs_up: int
    thumbs_down: int
    positive_rate: float | None
    csat_count: int
    csat_mean: float | None
    handed_off: int
    handoff_rate: float | None
    verified_intents: int
    intent_accuracy: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    # The serving guard: replies whose generated text was not sent (degenerate or low reward),
    # replaced by the intent's approved answer or handed off.
    guarded_replies: int = 0
    approved_replies: int = 0
    fallback_rate: float | None = None
    # Handoffs that reached a human: conversations whose first agent reply came in the window,
    # and the wait from the handoff to that reply (seconds). `handed_off` / `handoff_rate`
    # above count conversations started in the window that were ever handed off.
    first_agent_replies: int = 0
    first_agent_reply_p50_s: float | None = None
    first_agent_reply_p95_s: float | None = None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 1]) of already sorted values."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def window_series(
    session: Session, buckets: TimeBuckets, *, model_version: str | None = None
) -> list[WindowMetrics]:
    """The figures of every bucket, in order, from one grouped query per figure family."""
    counts = MonitorFigureRepository(session).counts(buckets, model_version=model_version)
    return [
        _metrics(c, since=since, until=until, model_version=model_version)
        for c, (since, until) in zip(counts, buckets.windows(), strict=True)
    ]


def window_metrics(
    session: Session,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model_version: str | None = None,
) -> WindowMetrics:
    """The figures of one window (either side may be open): the series of one bucket."""
    buckets = TimeBuckets((since, until))
    return window_series(session, buckets, model_version=model_version)[0]


def _metrics(
    counts: BucketCounts,
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    model_version: str | None,
) -> WindowMetrics:
    up, down = counts.thumbs_up, counts.thumbs_down
    return WindowMetrics(
        since=since,
        until=until,
        model_version=model_version,
        conversations=counts.conversations,
        customer_messages=counts.customer_messages,
        assistant_replies=counts.assistant_replies,
        thumbs_up=up,
        thumbs_down=down,
        positive_rate=_ratio(up, up + down),
        csat_count=counts.csat_count,
        csat_mean=counts.csat_mean,
        handed_off=counts.handed_off,
        handoff_rate=_ratio(counts.handed_off, counts.conversations),
        verified_intents=counts.verified_intents,
        intent_accuracy=_ratio(counts.correct_intents, counts.verified_intents),
        latency_p50_ms=percentile(counts.latencies, 0.50),
        latency_p95_ms=percentile(counts.latencies, 0.95),
        guarded_replies=counts.guarded_replies,
        approved_replies=counts.approved_replies,
        fallback_rate=_ratio(counts.guarded_replies, counts.assistant_replies),
        first_agent_replies=len(counts.first_agent_waits),
        first_agent_reply_p50_s=percentile(counts.first_agent_waits, 0.50),
        first_agent_reply_p95_s=percentile(counts.first_agent_waits, 0.95),
    )
