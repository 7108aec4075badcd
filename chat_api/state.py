"""What the lifespan puts in `request.state`, typed, with one accessor per field."""

from __future__ import annotations

from typing import TypedDict, cast

from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from chat_api.batching.loop import Batcher
from chat_api.handoff_webhook import HandoffWebhook
from chat_api.live import LiveBus
from chat_api.login_lockout import LockoutShadow
from chat_api.metrics import ApiMetrics
from chat_api.ratelimit import RateLimiter
from chat_api.runtime.serving import ReplyEngine
from chat_api.widget_tokens import WidgetTokenSigner
from feedback.settings import Settings


class AppState(TypedDict):
    settings: Settings
    session_factory: sessionmaker[Session]
    limiter: RateLimiter
    login_shadow: LockoutShadow
    signer: WidgetTokenSigner
    metrics: ApiMetrics
    engine: ReplyEngine
    batcher: Batcher
    live: LiveBus
    webhook: HandoffWebhook | None  # set when handoff.webhook_url is


def app_state(request: Request) -> AppState:
    state = request.state
    return cast(
        AppState,
        {
            "settings": state.settings,
            "session_factory": state.session_factory,
            "limiter": state.limiter,
            "login_shadow": state.login_shadow,
            "signer": state.signer,
            "metrics": state.metrics,
            "engine": state.engine,
            "batcher": state.batcher,
            "live": state.live,
            "webhook": state.webhook,
        },
    )


def settings_of(request: Request) -> Settings:
    return cast(Settings, request.state.settings)
