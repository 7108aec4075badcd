"""Request dependencies: the unit of work, credentials, and rate limits.

The session dependency is the one place where a web request commits: after the endpoint
returns and before the response is sent, or rolls back if it raised. Routes and repositories
never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from chat_api.errors import Forbidden, RateLimited, Unauthorized
from chat_api.state import app_state, settings_of
from chat_api.widget_tokens import TokenExpired, TokenInvalid
from feedback.db import session_scope
from feedback.errors import AuthError
from feedback.models import ApiKey, Operator, OperatorRole
from feedback.repositories.operators import ApiKeyRepository, OperatorRepository


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(app_state(request)["session_factory"]) as session:
        yield session


# scope="function": commit before the response is sent, so an answer of success means the write
# is durable, and a failed commit reaches the client as an error.
DbSession = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="Bearer token")


def client_ip(request: Request) -> str:
    if settings_of(request).api.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


async def enforce_limit(request: Request, name: str, key: str, limit: int, window_s: int) -> None:
    settings = settings_of(request)
    if not settings.rate_limit.enabled:
        return
    state = app_state(request)
    decision = await state["limiter"].hit(f"{name}:{key}", limit, window_s)
    if not decision.allowed:
        state["metrics"].rate_limited.labels(name).inc()
        raise RateLimited(
            f"too many requests ({name}: {limit} per {window_s} s); "
            f"retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
            extra={"retry_after": decision.retry_after},
        )


async def per_ip_limit(request: Request) -> None:
    limit = settings_of(request).rate_limit.per_ip_per_minute
    await enforce_limit(request, "ip", client_ip(request), limit, 60)


async def conversation_start_limit(request: Request) -> None:
    limit = settings_of(request).rate_limit.conversations_per_ip_per_hour
    await enforce_limit(request, "start", client_ip(request), limit, 3600)


async def login_limit(request: Request) -> None:
    limit = settings_of(request).rate_limit.logins_per_ip_per_minute
    await enforce_limit(request, "login", client_ip(request), limit, 60)


def widget_conversation(
    request: Request,
    conversation_id: Annotated[uuid.UUID, Path(description="The conversation id.")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    """The conversation the widget token is bound to; it must be the one in the path."""
    if credentials is None:
        raise Unauthorized("missing widget token; send `Authorization: Bearer <token>`")
    try:
        claims = app_state(request)["signer"].verify(credentials.credentials)
    except TokenExpired:
        raise Unauthorized(
            "the widget token has expired; start a new conversation", code="token_expired"
        ) from None
    except TokenInvalid:
        raise Unauthorized("invalid widget token", code="invalid_token") from None
    if claims.conversation_id != conversation_id:
        raise Forbidden("this token belongs to another conversation")
    return conversation_id


async def conversation_write_limit(
    request: Request, conversation_id: Annotated[uuid.UUID, Depends(widget_conversation)]
) -> uuid.UUID:
    limit = settings_of(request).rate_limit.per_conversation_per_minute
    await enforce_limit(request, "conversation", str(conversation_id), limit, 60)
    return conversation_id


WidgetConversation = Annotated[uuid.UUID, Depends(widget_conversation)]
WidgetWrite = Annotated[uuid.UUID, Depends(conversation_write_limit)]


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None:
        raise Unauthorized("missing bearer token; log in at POST /v1/operator/login")
    return credentials.credentials


def current_operator(session: DbSession, token: Annotated[str, Depends(bearer_token)]) -> Operator:
    try:
        return OperatorRepository(session).resolve_session(token)
    except AuthError as exc:
        raise Unauthorized(str(exc), code="invalid_token") from None


def current_admin(operator: Annotated[Operator, Depends(current_operator)]) -> Operator:
    if operator.role != OperatorRole.ADMIN.value:
        raise Forbidden("this needs an admin; ask an admin to do it or to change your role")
    return operator


def current_api_key(session: DbSession, token: Annotated[str, Depends(bearer_token)]) -> ApiKey:
    try:
        return ApiKeyRepository(session).resolve(token)
    except AuthError as exc:
        raise Unauthorized(str(exc), code="invalid_api_key") from None


CurrentOperator = Annotated[Operator, Depends(current_operator)]
CurrentAdmin = Annotated[Operator, Depends(current_admin)]
CurrentApiKey = Annotated[ApiKey, Depends(current_api_key)]
