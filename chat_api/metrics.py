"""Prometheus metrics of one API app, in a registry of its own (no process-global state).

The ASGI middleware counts requests by method, route template and status, and times them.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chatdistill_http_requests_total",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chatdistill_http_request_duration_seconds",
            "HTTP request duration by method and route.",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "chatdistill_http_requests_in_flight",
            "HTTP requests being handled now.",
            registry=self.registry,
        )
        self.customer_messages = Counter(
            "chatdistill_customer_messages_total",
            "Customer messages stored.",
            registry=self.registry,
        )
        self.ratings = Counter(
            "chatdistill_ratings_total",
            "Ratings stored, by kind (thumbs_up, thumbs_down, csat).",
            ["kind"],
            registry=self.registry,
        )
        self.handoffs = Counter(
            "chatdistill_handoffs_total",
            "Conversations handed to a human, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.reply_sources = Counter(
            "chatdistill_replies_total",
            "Assistant replies stored, by what the guard sent (generated, approved, handoff).",
            ["source"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "chatdistill_rate_limited_total",
            "Requests refused by a rate limit, by limit name.",
            ["limit"],
            registry=self.registry,
        )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
