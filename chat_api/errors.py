"""HTTP errors and the JSON shape every error response has.

    ApiError                       {"error": {"code", "message", ...}}
    ├── Unauthorized       401     missing, invalid or expired credentials
    ├── Forbidden          403     valid credentials, not for this resource
    ├── NotFoundError      404
    ├── ConflictError      409
    ├── PayloadTooLarge    413     request body over the configured limit
    ├── Unprocessable      422     well-formed but unacceptable input
    ├── RateLimited        429     with Retry-After
    └── ServiceUnavailable 503     e.g. no model deployed, with Retry-After where it helps

Expected conditions from the store (`feedback.errors`) map onto these; validation errors keep
FastAPI's 422 with the same envelope. Nothing expected becomes a 500.

A saturated or unreachable store (the connection pool timed out, SQLite's lock wait ran out,
PostgreSQL refused a connection) answers 503 `store_busy` with Retry-After: the client may retry,
and nothing of that request was committed. Anything unexpected answers 500 `internal_error` in
the same envelope, with the security headers (that handler runs outside the app's middleware),
and is logged with its traceback; no SQL parameters are ever logged (`hide_parameters`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from chat_api.schemas import ErrorBody
from chat_api.security_headers import ALWAYS_HEADERS
from feedback.errors import (
    AuthError,
    Conflict,
    FeedbackError,
    InvalidInput,
    NotFound,
    NotPermitted,
)


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status_code = 404
    code = "not_found"


class ConflictError(ApiError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    status_code = 422
    code = "validation_error"


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "service_unavailable"


# The errors every widget route may answer, documented on each of the widget's routers.
WIDGET_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or expired widget token."},
    403: {"model": ErrorBody, "description": "The token belongs to another conversation."},
    404: {"model": ErrorBody, "description": "No such conversation or message."},
    413: {"model": ErrorBody, "description": "Request body too large."},
    422: {"model": ErrorBody, "description": "Invalid input."},
    429: {"model": ErrorBody, "description": "Rate limited; see Retry-After."},
}

# The errors every operator route may answer (login, review, metrics, models).
OPERATOR_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    404: {"model": ErrorBody, "description": "Not found."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        jsonable_encoder(error_body(code, message, **extra)),
        status_code=status_code,
        headers=headers,
    )


_STORE_STATUS: dict[type[FeedbackError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    AuthError: 401,
    NotPermitted: 403,
}


STORE_RETRY_AFTER_S = 2

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(FeedbackError)
    async def _store_error(_request: Request, exc: FeedbackError) -> JSONResponse:
        status = next((s for t, s in _STORE_STATUS.items() if isinstance(exc, t)), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return error_response(
            422,
            "validation_error",
            "the request is invalid: "
            + "; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in details),
            details=details,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(
            exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None
        )

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OperationalError)
    async def _store_busy(request: Request, exc: Exception) -> JSONResponse:
        # The statement's parameters are hidden by the engine; the message names the cause.
        log.warning("store busy on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(
            503,
            "store_busy",
            "the feedback store is busy; nothing of this request was kept, retry shortly",
            {"Retry-After": str(STORE_RETRY_AFTER_S)},
            retry_after=STORE_RETRY_AFTER_S,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's outermost middleware calls this one, outside SecurityHeadersMiddleware.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500,
            "internal_error",
            "something went wrong on our side; it has been logged",
            {name.decode(): value.decode() for name, value in ALWAYS_HEADERS},
        )
