"""Widget tokens: a signed, expiring credential bound to exactly one conversation.

Format: `wt1.<conversation id hex>.<expiry unix seconds>.<signature>` where the signature is
HMAC-SHA256 over the first three fields with the server's secret key. No database lookup is
needed to check one, and a token for conversation A can be told apart from a forged one when it
is presented for conversation B (403, not 401).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from feedback.models import utcnow

_VERSION = "wt1"


class TokenInvalid(Exception):
    """Malformed or forged token."""


class TokenExpired(Exception):
    """Well-formed and genuine, but past its expiry."""


@dataclass(frozen=True)
class WidgetClaims:
    conversation_id: uuid.UUID
    expires_at: dt.datetime


class WidgetTokenSigner:
    def __init__(self, key: bytes, ttl: dt.timedelta) -> None:
        if len(key) < 16:
            raise ValueError("the widget signing key must have at least 16 bytes")
        self._key = key
        self.ttl = ttl

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(
        self, conversation_id: uuid.UUID, *, now: dt.datetime | None = None
    ) -> tuple[str, dt.datetime]:
        expires_at = (now or utcnow()) + self.ttl
        payload = f"{_VERSION}.{conversation_id.hex}.{int(expires_at.timestamp())}"
        return f"{payload}.{self._sign(payload)}", expires_at.replace(microsecond=0)

    def verify(self, token: str, *, now: dt.datetime | None = None) -> WidgetClaims:
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise TokenInvalid("not a widget token")
        payload, signature = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(self._sign(payload), signature):
            raise TokenInvalid("bad signature")
        try:
            conversation_id = uuid.UUID(hex=parts[1])
            expires_at = dt.datetime.fromtimestamp(int(parts[2]), tz=dt.UTC)
        except ValueError as exc:
            raise TokenInvalid("malformed token") from exc
        if expires_at <= (now or utcnow()):
            raise TokenExpired("token expired")
        return WidgetClaims(conversation_id=conversation_id, expires_at=expires_at)
