"""Operator metrics over time: the monitor's figures per time bucket, with the thresholds and
the production promotions in the same range (what the dashboard's charts draw)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import Unprocessable
from chat_api.input_types import QueryTime, Text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import AliasEventOut, ErrorBody, MetricsPoint, MetricsSeries, Thresholds
from chat_api.state import settings_of
from feedback.models import ModelAliasEvent, utcnow
from feedback.monitor import window_metrics
from feedback.repositories.model_versions import PRODUCTION

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    404: {"model": ErrorBody, "description": "Not found."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}

router = APIRouter(
    route_class=TransactionEndingRoute, prefix="/v1/operator", tags=["operator"], responses=_ERRORS
)

DEFAULT_RANGE = dt.timedelta(hours=24)


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
    end = _utc(until) or utcnow()
    start = _utc(since) or end - DEFAULT_RANGE
    if start >= end:
        raise Unprocessable("`since` must be before `until`", code="empty_range")
    step = dt.timedelta(seconds=math.ceil((end - start).total_seconds() / buckets))
    points = []
    for i in range(buckets):
        lo, hi = start + step * i, min(start + step * (i + 1), end)
        if lo >= end:
            break
        m = window_metrics(session, since=lo, until=hi, model_version=model_version)
        points.append(
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
            )
        )
    promotions = session.scalars(
        select(ModelAliasEvent)
        .where(
            ModelAliasEvent.alias == PRODUCTION,
            ModelAliasEvent.at >= start,
            ModelAliasEvent.at < end,
        )
        .order_by(ModelAliasEvent.at)
    ).all()
    monitor = settings_of(request).monitor
    return MetricsSeries(
        since=start,
        until=end,
        bucket_seconds=int(step.total_seconds()),
        model_version=model_version,
        points=points,
        thresholds=Thresholds(**monitor.model_dump()),
        promotions=[AliasEventOut.model_validate(e) for e in promotions],
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Query datetimes without a zone are taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
