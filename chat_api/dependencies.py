"""Request dependencies: the unit of work, credentials, and rate limits.

The session dependency is where a web request commits: after the endpoint returns and before
the response is sent, or rolls back if it raised. Repositories never commit. The one exception:
the reply routes commit the customer's turn themselves before they wait for the model (no
transaction spans model work) and the plain route stores the reply in a second short
transaction it commits too: a commit left to the teardown waits for a free threadpool slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from chat_api.errors import Forbidden, RateLimited, Unauthorized
from chat_api.forwarded import client_address
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
    """The client's address, counting `api.trusted_proxy_hops` proxies (chat_api.forwarded)."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings_of(request).api.trusted_proxy_hops,
    )


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
    """The operator of the session token, read in a transaction that ends here. A dependency
    runs in its own threadpool slot and the handler waits for another: a transaction left open
    between them (on SQLite it holds the write lock, every transaction begins IMMEDIATE; on
    PostgreSQL a pooled connection) waited for a free slot while every slot's customer waited
    for that lock, and the whole API stalled for the 30 s busy timeout (bench/load.py)."""
    try:
        operator = OperatorRepository(session).resolve_session(token)
    except AuthError as exc:
        raise Unauthorized(str(exc), code="invalid_token") from None
    session.commit()
    return operator


def current_admin(operator: Annotated[Operator, Depends(current_operator)]) -> Operator:
    if operator.role != OperatorRole.ADMIN.value:
        raise Forbidden("this needs an admin; ask an admin to do it or to change your role")
    return operator


def current_api_key(session: DbSession, token: Annotated[str, Depends(bearer_token)]) -> ApiKey:
    """The API key, checked in a transaction that ends here: the routes it guards wait for the
    model, and no transaction (nor pooled connection, nor SQLite's write lock) may span that."""
    try:
        key = ApiKeyRepository(session).resolve(token)
    except AuthError as exc:
        raise Unauthorized(str(exc), code="invalid_api_key") from None
    session.commit()
    return key


async def api_key_limit(
    request: Request, api_key: Annotated[ApiKey, Depends(current_api_key)]
) -> ApiKey:
    """The API key, within its per-minute request limit."""
    limit = settings_of(request).rate_limit.per_api_key_per_minute
    await enforce_limit(request, "api_key", str(api_key.id), limit, 60)
    return api_key


CurrentOperator = Annotated[Operator, Depends(current_operator)]
CurrentAdmin = Annotated[Operator, Depends(current_admin)]
# Every route that takes an API key counts against the key's rate limit.
CurrentApiKey = Annotated[ApiKey, Depends(api_key_limit)]
