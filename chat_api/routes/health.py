"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the store answers)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from chat_api.ratelimit import RedisRateLimiter
from chat_api.routing import TransactionEndingRoute
from chat_api.state import app_state

logger = logging.getLogger(__name__)

router = APIRouter(route_class=TransactionEndingRoute, tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "environment": app_state(request)["settings"].environment}


@router.get(
    "/readyz",
    summary="Readiness: the database (and Redis, when configured) answer",
    responses={503: {"description": "A dependency is down; the body says which."}},
)
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    checks: dict[str, Any] = {}
    ready = True

    def ping_database() -> None:
        with state["session_factory"]() as session:
            session.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping_database)
        checks["database"] = "ok"
    except Exception as exc:
        logger.warning("readiness: database check failed: %s", type(exc).__name__)
        checks["database"] = f"error: {type(exc).__name__}"
        ready = False
    limiter = state["limiter"]
    if isinstance(limiter, RedisRateLimiter):
        try:
            await limiter.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
            ready = False
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = app_state(request)["metrics"].registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
