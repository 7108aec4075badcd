"""The handoff webhook: a company's own tools hear of every conversation that enters the queue.

When a conversation becomes `waiting` (after the commit; `chat_api.live.became_waiting`), one
JSON body is POSTed to `handoff.webhook_url`:

    {"event": "conversation.waiting", "conversation_id": "...", "reason": "customer_request",
     "waiting_since": "2026-12-04T12:00:00+00:00", "sent_at": 1764849600}

signed so the receiver can tell it came from us and is fresh:

    X-Chatdistill-Timestamp: <unix seconds>
    X-Chatdistill-Signature: sha256=<hex HMAC-SHA256(webhook_secret, "<timestamp>." + body)>

`verify_signature` is the receiving side's check (README "Handoff webhook"). Delivery runs on a
thread of its own with a bounded queue, so a slow or dead receiver never delays a customer;
each event is tried `webhook_attempts` times with doubling backoff (0.5 s, 1 s, 2 s, ...), then
dropped with a warning. The log names the conversation and the HTTP status, never the secret.
The body carries no customer text: the reason is one of the bot's or the widget's codes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import uuid

import httpx
from sqlalchemy.orm import Session, sessionmaker

from feedback.db import session_scope
from feedback.models import Conversation
from feedback.settings import HandoffSettings

logger = logging.getLogger(__name__)

EVENT = "conversation.waiting"
QUEUE_SIZE = 1000
TIMESTAMP_HEADER = "X-Chatdistill-Timestamp"
SIGNATURE_HEADER = "X-Chatdistill-Signature"
_STOP = object()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when `signature` signs `body` with `secret` and `timestamp` is within
    `tolerance_s` of now (an old, replayed body is refused). Constant-time comparison."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


class HandoffWebhook:
    """Posts `conversation.waiting` events from a background thread. `notify` never blocks."""

    def __init__(self, settings: HandoffSettings, factory: sessionmaker[Session]) -> None:
        if not settings.webhook_url or settings.webhook_secret is None:
            raise ValueError("HandoffWebhook needs handoff.webhook_url and webhook_secret")
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret.get_secret_value()
        self._attempts = settings.webhook_attempts
        self._timeout = settings.webhook_timeout_s
        self._factory = factory
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="handoff-webhook", daemon=True)
        self._thread.start()

    def notify(self, conversation_id: uuid.UUID) -> None:
        """Queue the event for a conversation that just entered the queue (committed)."""
        try:
            self._queue.put_nowait(conversation_id)
        except queue.Full:
            logger.warning("handoff webhook queue full; event for %s dropped", conversation_id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for at most `timeout_s`), then stop the thread."""
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (item := self._queue.get()) is not _STOP:
                assert isinstance(item, uuid.UUID)
                try:
                    self._deliver(client, item)
                except Exception:  # a bad row or a bug must not end the thread
                    logger.exception("handoff webhook for %s failed", item)

    def _body(self, conversation_id: uuid.UUID) -> bytes:
        with session_scope(self._factory) as session:
            conversation = session.get(Conversation, conversation_id)
            reason = conversation.handoff_reason if conversation else None
            since = conversation.handed_off_at if conversation else None
        payload = {
            "event": EVENT,
            "conversation_id": str(conversation_id),
            "reason": reason,
            "waiting_since": since.astimezone(dt.UTC).isoformat() if since else None,
            "sent_at": int(time.time()),
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def _deliver(self, client: httpx.Client, conversation_id: uuid.UUID) -> None:
        body = self._body(conversation_id)
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            }
            try:
                response = client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            else:
                if response.is_success:
                    return
                outcome = f"HTTP {response.status_code}"
            logger.warning(
                "handoff webhook for %s: attempt %d of %d failed (%s)",
                conversation_id, attempt + 1, self._attempts, outcome,
            )  # fmt: skip
        logger.error(
            "handoff webhook for %s dropped after %d attempts", conversation_id, attempt + 1
        )
