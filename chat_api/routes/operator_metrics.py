"""Operator metrics: the monitor's figures over one window (the summary), and per time bucket
with the thresholds and the production promotions in the same range (what the dashboard's
charts draw). A series costs a fixed number of queries, whatever its bucket count
(`feedback.monitor.window_series`)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from fastapi import APIRouter, Query, Request

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import OPERATOR_ERRORS, Unprocessable
from chat_api.input_types import QueryTime, Text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import (
    AliasEventOut,
    MetricsPoint,
    MetricsSeries,
    MetricsSummary,
    Thresholds,
)
from chat_api.state import settings_of
from feedback.models import utcnow
from feedback.monitor import window_metrics, window_series
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.monitor_figures import TimeBuckets

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)

DEFAULT_RANGE = dt.timedelta(hours=24)


@router.get(
    "/metrics/summary",
    summary="Ratings, CSAT, handoffs and time to an agent, intent accuracy, latency",
)
def metrics_summary(
    _operator: CurrentOperator,
    session: DbSession,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    model_version: Annotated[Text | None, Query(max_length=120)] = None,
) -> MetricsSummary:
    metrics = window_metrics(session, since=since, until=until, model_version=model_version)
    production = ModelVersionRepository(session).resolve_alias(PRODUCTION)
    return MetricsSummary(
        **metrics.model_dump(), production_model=production.id if production else None
    )


@router.get("/metrics/series", summary="Rating rate, intent accuracy, handoffs, p95 over time")
def metrics_series(
    request: Request,
    _operator: CurrentOperator,
    session: DbSession,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    buckets: Annotated[int, Query(ge=1, le=96)] = 24,
    model_version: Annotated[Text | None, Query(max_length=120)] = None,
) -> MetricsSeries:
    end = until or utcnow()
    start = since or end - DEFAULT_RANGE
    if start >= end:
        raise Unprocessable("`since` must be before `until`", code="empty_range")
    step = dt.timedelta(seconds=math.ceil((end - start).total_seconds() / buckets))
    windows = TimeBuckets.even(start, end, step)
    points = [
        MetricsPoint(
            start=lo,
            end=hi,
            conversations=m.conversations,
            assistant_replies=m.assistant_replies,
            thumbs_up=m.thumbs_up,
            thumbs_down=m.thumbs_down,
            positive_rate=m.positive_rate,
            verified_intents=m.verified_intents,
            intent_accuracy=m.intent_accuracy,
            handoff_rate=m.handoff_rate,
            latency_p95_ms=m.latency_p95_ms,
            fallback_rate=m.fallback_rate,
            handed_off=m.handed_off,
            first_agent_replies=m.first_agent_replies,
            first_agent_reply_p50_s=m.first_agent_reply_p50_s,
            first_agent_reply_p95_s=m.first_agent_reply_p95_s,
        )
        for (lo, hi), m in zip(
            windows.windows(),
            window_series(session, windows, model_version=model_version),
            strict=True,
        )
    ]
    promotions = ModelVersionRepository(session).alias_moves_between(start, end, PRODUCTION)
    return MetricsSeries(
        since=start,
        until=end,
        bucket_seconds=int(step.total_seconds()),
        model_version=model_version,
        points=points,
        thresholds=Thresholds(**settings_of(request).monitor.model_dump()),
        promotions=[AliasEventOut.model_validate(e) for e in promotions],
    )
