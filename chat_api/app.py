"""`create_app(settings)`: the FastAPI application with a typed lifespan.

The lifespan opens the database engine and the rate limiter, loads the deployed model (the
registry's `production` bundle, verified; none or a bad one: the API runs and answers 503 for
replies) and starts the batcher (`chat_api.batching.loop.Batcher`, one worker thread that
runs the model steps for every reply) and the bundle watcher (`chat_api.runtime.watcher`: hot
swaps when the registry's aliases move, told by Redis pub/sub or found by polling) and puts them,
with the settings, into the request state (`chat_api.state.AppState`);
it closes them on shutdown.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from chat_api.batching.loop import Batcher
from chat_api.batching.scheduler import SchedulerConfig
from chat_api.body_limit import BodySizeLimitMiddleware
from chat_api.errors import install_error_handlers
from chat_api.handoff_webhook import HandoffWebhook
from chat_api.live import LiveBus
from chat_api.login_lockout import InProcessLockoutShadow, LockoutShadow, RedisLockoutShadow
from chat_api.metrics import ApiMetrics, MetricsMiddleware
from chat_api.ratelimit import InProcessRateLimiter, RateLimiter, RedisRateLimiter
from chat_api.routes import (
    admin,
    approved_answers,
    health,
    openai_compat,
    operator_auth,
    operator_conversations,
    operator_corrections,
    operator_handoff,
    operator_inbox,
    operator_metrics,
    operator_models,
    promotion,
    runs,
    web,
    widget,
    widget_events,
    widget_messages,
    widget_ratings,
    widget_stream,
)
from chat_api.runtime.serving import ReplyEngine, ServingOptions, load_deployed
from chat_api.runtime.watcher import BundleWatcher
from chat_api.security_headers import SecurityHeadersMiddleware
from chat_api.state import AppState
from chat_api.widget_tokens import WidgetTokenSigner
from feedback.db import make_engine, make_session_factory
from feedback.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """
Customer-service chat API.

* **widget**: public endpoints for the chat widget; `POST /v1/widget/conversations` returns a
  token bound to that one conversation, sent as `Authorization: Bearer <token>` afterwards.
* **operator**: the dashboard's API (bearer token from `POST /v1/operator/login`).
* **admin**: operators, API keys, audit log (admin role).
* **openai-compatible**: `/v1/chat/completions` for server-to-server clients (API key).

Errors always have the shape `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    serving: ServingOptions | None = None,
    batching: SchedulerConfig | None = None,
) -> FastAPI:
    """Build the app. `session_factory` lets tests bind sessions to a transaction they roll back;
    `serving` and `batching` override how the model is served (default: the settings')."""
    metrics = ApiMetrics()
    serving_options = (
        serving
        if serving is not None
        else ServingOptions(
            bundle_dir=settings.serving.bundle_dir,
            precision=settings.serving.precision,
            intra_op_threads=settings.serving.intra_op_threads,
            inter_op_threads=settings.serving.inter_op_threads,
            handoff_threshold=settings.serving.handoff_threshold,
            handoff_score=settings.serving.handoff_score,
            decoding=settings.serving.decoding.model_dump(exclude_none=True),
            guard_min_reward=settings.serving.guard_min_reward,
            provider=settings.serving.provider,
            canary_share=settings.canary.share,
        )
    )
    batching_config = batching if batching is not None else scheduler_config(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        engine = None
        factory = session_factory
        if factory is None:
            engine = make_engine(settings)
            factory = make_session_factory(engine)
        limiter: RateLimiter = (
            RedisRateLimiter(settings.redis.url, prefix=settings.redis.key_prefix + "rl:")
            if settings.redis.url
            else InProcessRateLimiter()
        )
        login_shadow: LockoutShadow = (
            RedisLockoutShadow(settings.redis.url, prefix=settings.redis.key_prefix + "login-lock:")
            if settings.redis.url
            else InProcessLockoutShadow()
        )
        signer = WidgetTokenSigner(
            settings.widget_signing_key(),
            ttl=dt.timedelta(hours=settings.auth.widget_token_ttl_hours),
        )
        reply_engine = ReplyEngine(serving_options)
        loaded = await run_in_threadpool(load_deployed, reply_engine, factory)
        batcher = Batcher(reply_engine, batching_config)
        batcher.start()
        watcher = BundleWatcher(reply_engine, factory, settings)
        await watcher.start()
        live = LiveBus(settings.redis.url, settings.redis.key_prefix)
        await live.start()
        webhook = (
            HandoffWebhook(settings.handoff, factory) if settings.handoff.webhook_url else None
        )
        logger.info(
            "chat API starting (database %s, rate limits %s, model %s)",
            "postgresql" if settings.database_url.startswith("postgresql") else "sqlite",
            "redis" if settings.redis.url else "in-process",
            loaded.version_id if loaded else "none",
        )
        try:
            yield {
                "settings": settings,
                "session_factory": factory,
                "limiter": limiter,
                "login_shadow": login_shadow,
                "signer": signer,
                "metrics": metrics,
                "engine": reply_engine,
                "batcher": batcher,
                "live": live,
                "webhook": webhook,
            }
        finally:
            await live.close()
            if webhook is not None:
                await run_in_threadpool(webhook.close)
            await watcher.stop()
            await run_in_threadpool(batcher.stop)
            await limiter.close()
            login_shadow.close()
            if engine is not None:
                engine.dispose()

    app = FastAPI(
        title="chatdistill",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI and ReDoc load from a CDN: off in production unless `api.docs` says so.
        docs_url="/docs" if settings.serve_docs else None,
        redoc_url="/redoc" if settings.serve_docs else None,
    )
    install_error_handlers(app)
    app.include_router(widget.router)
    app.include_router(widget_messages.router)
    app.include_router(widget_stream.router)
    app.include_router(widget_ratings.router)
    app.include_router(widget_events.router)
    app.include_router(operator_auth.router)
    app.include_router(operator_conversations.router)
    app.include_router(operator_corrections.router)
    app.include_router(operator_inbox.router)
    app.include_router(operator_handoff.router)
    app.include_router(operator_metrics.router)
    app.include_router(operator_models.router)
    app.include_router(approved_answers.router)
    app.include_router(admin.router)
    app.include_router(openai_compat.router)
    app.include_router(health.router)
    app.include_router(promotion.router)
    app.include_router(runs.router)
    app.include_router(web.router)
    # Outermost last: metrics see every response, including 413s from the body limit.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def scheduler_config(settings: Settings) -> SchedulerConfig:
    serving = settings.serving
    return SchedulerConfig(
        mode=serving.batching,
        max_batch=serving.max_batch,
        max_queue=serving.max_queue,
        latency_target_s=serving.latency_target_ms / 1000.0,
        max_wait_s=serving.max_wait_ms / 1000.0,
        deadline_s=serving.request_timeout_s,
    )
