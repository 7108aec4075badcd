"""Two real `chatdistill serve` processes on one PostgreSQL database and one Redis, as two
replicas behind a load balancer would be (each on its own port; the test is the balancer).

- A rate limit holds across them: the Redis counters are shared, so N writes per conversation
  per minute means N in total, whichever process takes them.
- A promotion made on one reaches the other: process A moves `production` (admin API), publishes
  the change on Redis, and process B hot-swaps within seconds, long before its polling fallback
  (set to 10 minutes here) would have noticed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from bundle_runtime.deploy import store_bundle
from bundle_runtime.manifest import bundle_checksum
from feedback import migrate
from feedback.db import session_scope
from feedback.models import OperatorRole
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.operators import ApiKeyRepository, OperatorRepository
from tests.conftest import REDIS_URL, TEST_SECRET, create_database, drop_database
from tests.live.server import running_server

pytest.importorskip("torch", reason="the tiny bundle is trained and exported with torch")
from tests.fixtures.tiny_bundle import TOY, TinyBundle

ADMIN_EMAIL = "ops.admin@example.com"
ADMIN_PASSWORD = "a long enough admin password"
PER_CONVERSATION = 6  # widget writes per conversation per minute, in total over both processes
QUESTION = TOY["track_order"][0][0]  # the tiny student answers it with confidence


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    api_key: str


def _prepare(db_url: str, bundle: Path, bundles_root: Path) -> str:
    """The store: migrated; one bundle registered as `old` (production) and as `new`; an admin;
    an API key (returned) for the OpenAI-compatible endpoint."""
    engine = create_engine(db_url)
    migrate.upgrade(engine)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with session_scope(factory) as session:
        manifest, stored = store_bundle(bundle, bundles_root)
        repo = ModelVersionRepository(session)
        for version in ("old", "new"):
            repo.register(
                version_id=version,
                bundle_uri=str(stored),
                checksum=bundle_checksum(stored),
                metrics=manifest.metrics,
            )
        repo.set_alias(PRODUCTION, "old", reason="first deploy")
        OperatorRepository(session).create(
            email=ADMIN_EMAIL, name="Ops Admin", password=ADMIN_PASSWORD, role=OperatorRole.ADMIN
        )
        key = ApiKeyRepository(session).create(name="two-process test").key
    engine.dispose()
    return key


@pytest.fixture
def pair(tmp_path: Path, tiny_bundle: TinyBundle, redis_prefix: str) -> Iterator[Pair]:
    name = f"chatdistill_pair_{uuid.uuid4().hex[:12]}"
    db_url = create_database(name)
    data = tmp_path / "data"
    try:
        api_key = _prepare(db_url, tiny_bundle.path, data / "bundles")
        env = {
            "CHATDISTILL_DATA_DIR": str(data),  # the shared artifact store
            "CHATDISTILL_DATABASE__URL": db_url,
            "CHATDISTILL_REDIS__URL": REDIS_URL,
            "CHATDISTILL_REDIS__KEY_PREFIX": redis_prefix,
            "CHATDISTILL_AUTH__SECRET_KEY": TEST_SECRET,  # the same on both: tokens work on both
            "CHATDISTILL_SERVING__PRECISION": "fp32",
            "CHATDISTILL_RATE_LIMIT__PER_CONVERSATION_PER_MINUTE": str(PER_CONVERSATION),
            "CHATDISTILL_RATE_LIMIT__PER_IP_PER_MINUTE": "10000",
            "CHATDISTILL_EVENTS__POLL_INTERVAL_S": "600",
            "CHATDISTILL_LOG_LEVEL": "WARNING",
        }
        with ExitStack() as stack:
            a = stack.enter_context(running_server(env))
            b = stack.enter_context(running_server(env))
            yield Pair(a, b, api_key)
    finally:
        drop_database(name)


def _conversation(base: str) -> dict[str, str]:
    started = httpx.post(f"{base}/v1/widget/conversations", json={}, timeout=10)
    assert started.status_code == 201, started.text
    body = started.json()
    return {"id": body["conversation_id"], "auth": f"Bearer {body['token']}"}


def _say(base: str, conversation: dict[str, str], text: str = QUESTION) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/widget/conversations/{conversation['id']}/messages",
        json={"text": text},
        headers={"Authorization": conversation["auth"]},
        timeout=30,
    )


def _served_version(base: str, api_key: str) -> Any:
    """The version that answers a chat completion on this process (no `model`: production)."""
    answered = httpx.post(
        f"{base}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert answered.status_code == 200, answered.text
    return answered.json()["model"]


@pytest.mark.usefixtures("steady_minute")
def test_a_rate_limit_holds_across_both_processes(pair: Pair) -> None:
    conversation = _conversation(pair.a)
    codes = [_say(base, conversation).status_code for base in [pair.a, pair.b] * PER_CONVERSATION]
    # alternating A, B, A, B...: the first PER_CONVERSATION writes pass, whichever process took
    # them; every later one is refused by both (per process, each would have allowed 6)
    assert codes == [201] * PER_CONVERSATION + [429] * PER_CONVERSATION
    refused = _say(pair.b, conversation)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"


def test_a_promotion_on_one_process_reaches_the_other(pair: Pair) -> None:
    assert _served_version(pair.a, pair.api_key) == "old"
    assert _served_version(pair.b, pair.api_key) == "old"

    login = httpx.post(
        f"{pair.a}/v1/operator/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    promoted = httpx.post(
        f"{pair.a}/v1/operator/models/new/promote",
        json={"reason": "two-process test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["model_version_id"] == "new"
    assert _served_version(pair.a, pair.api_key) == "new"  # A loaded it before moving the alias

    started = time.monotonic()
    seen = "old"
    while seen != "new" and time.monotonic() - started < 20:
        time.sleep(0.2)
        seen = _served_version(pair.b, pair.api_key)
    swapped_after = time.monotonic() - started
    print(f"process B served the promoted version {swapped_after:.2f} s after the promotion")
    assert seen == "new", "process B never swapped to the promoted version"
    assert swapped_after < 20  # the event did it: B polls the store only every 600 s
