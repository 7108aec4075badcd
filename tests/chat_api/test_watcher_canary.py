"""The canary in a running app: the watcher loads the `canary` alias, a stable share of
conversations gets it (sticky per conversation), the stored replies name the version that
answered, and a rollback decided by `feedback.canary` and announced on Redis moves every
conversation back to the champion."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from chat_api.app import create_app
from chat_api.runtime.serving import route_bucket
from feedback.aliases import Move, apply_canary_decision, publish
from feedback.canary import check_canary
from feedback.models import OperatorRole
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository
from tests.conftest import REDIS_URL
from tests.fixtures.hot_swap import app_settings, in_store, wait_for, wait_subscribed
from tests.fixtures.operators import make_operator


def converse(client: TestClient, turns: int = 2) -> list[str]:
    """One conversation of `turns` customer messages; -> the version of each reply."""
    started = client.post("/v1/widget/conversations", json={}).json()
    headers = {"Authorization": f"Bearer {started['token']}"}
    seen = []
    for _ in range(turns):
        response = client.post(
            f"/v1/widget/conversations/{started['conversation_id']}/messages",
            json={"text": "where is my order"},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        seen.append(response.json()["reply"]["model_version"])
    return seen


def test_route_bucket_is_stable_and_spread() -> None:
    keys = [str(uuid.UUID(int=i)) for i in range(2000)]
    assert [route_bucket(k) for k in keys[:5]] == [route_bucket(k) for k in keys[:5]]
    share = sum(route_bucket(k) < 0.25 for k in keys) / len(keys)
    assert 0.2 < share < 0.3


def test_a_share_of_conversations_sticks_to_the_canary_until_it_is_rolled_back(
    store_url: str, versions: dict[str, str], tmp_path: Path, redis_prefix: str
) -> None:
    champion, canary = versions["a"], versions["b"]
    in_store(store_url, lambda s: ModelVersionRepository(s).set_alias(CANARY, canary))
    settings = app_settings(
        tmp_path,
        store_url,
        redis={"url": REDIS_URL, "key_prefix": redis_prefix},
        canary={"share": 0.5, "min_sample": 3, "margin": 0.1},
    )
    with TestClient(create_app(settings)) as client:
        conversations = [converse(client) for _ in range(16)]
        for seen in conversations:
            assert len(set(seen)) == 1  # sticky: both turns on the same model
        answered = [seen[0] for seen in conversations]
        assert champion in answered and canary in answered

        # Customers dislike the canary's replies: the check rolls it back, the app follows.
        wait_subscribed(settings)
        decisions = []
        moves: list[Move | None] = []

        def check_and_apply(session: Session) -> None:
            decision = check_canary(session, settings)
            decisions.append(decision)
            moves.append(apply_canary_decision(session, decision))

        in_store(store_url, _rate_all_replies(champion, canary))
        in_store(store_url, check_and_apply)
        assert decisions[0].action == "rollback", decisions[0].reason
        assert moves[0] is not None
        publish(settings, moves[0])
        wait_for(lambda: converse(client, 1)[0] == champion and _all_on(client, champion), 10, "")
        history = client.get(
            "/v1/operator/models/history",
            params={"alias": "canary"},
            headers=_admin_headers(client, store_url),
        ).json()
        assert [e["model_version_id"] for e in history[:2]] == [champion, canary]


def _all_on(client: TestClient, version: str) -> bool:
    return all(converse(client, 1)[0] == version for _ in range(8))


def _rate_all_replies(champion: str, canary: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from feedback.models import Message, MessageRole
    from feedback.repositories.ratings import RatingRepository

    def rate(session: Session) -> None:
        rows = session.scalars(
            select(Message).where(
                Message.role == MessageRole.ASSISTANT.value,
                Message.model_version.in_([champion, canary]),
            )
        ).all()
        for message in rows:
            thumbs = 1 if message.model_version == champion else -1
            RatingRepository(session).rate_message(message, thumbs=thumbs)

    return rate


def _admin_headers(client: TestClient, url: str) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    in_store(url, lambda s: make_operator(s, role=OperatorRole.ADMIN, email=email))
    token = client.post(
        "/v1/operator/login", json={"email": email, "password": "correct horse battery staple"}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_admin_starts_and_stops_a_canary(
    store_url: str, versions: dict[str, str], tmp_path: Path
) -> None:
    settings = app_settings(tmp_path, store_url, canary={"share": 1.0})
    with TestClient(create_app(settings)) as client:
        headers = _admin_headers(client, store_url)
        started = client.post(
            f"/v1/operator/models/{versions['b']}/canary", json={"reason": "try"}, headers=headers
        )
        assert started.status_code == 200, started.text
        assert started.json()["serving"] == versions["b"]
        assert converse(client, 1) == [versions["b"]]  # share 1.0: every conversation
        stopped = client.post("/v1/operator/models/canary/stop", json={"reason": "enough"},
                              headers=headers)  # fmt: skip
        assert stopped.status_code == 200, stopped.text
        assert converse(client, 1) == [versions["a"]]
        again = client.post("/v1/operator/models/canary/stop", json={"reason": "x"},
                            headers=headers)  # fmt: skip
        assert again.status_code == 409 and again.json()["error"]["code"] == "no_canary"
        bad = client.post(
            f"/v1/operator/models/{versions['bad']}/canary", json={"reason": "x"}, headers=headers
        )
        assert bad.status_code == 409 and bad.json()["error"]["code"] == "bundle_unusable"
        in_store(store_url, lambda s: _assert_canary_is(s, versions["a"]))


def test_starting_a_canary_while_canaries_are_off_is_refused(
    store_url: str, versions: dict[str, str], tmp_path: Path
) -> None:
    with TestClient(create_app(app_settings(tmp_path, store_url))) as client:
        response = client.post(
            f"/v1/operator/models/{versions['b']}/canary", json={"reason": "try"},
            headers=_admin_headers(client, store_url),
        )  # fmt: skip
        assert response.status_code == 409 and response.json()["error"]["code"] == "canary_off"
        assert converse(client, 1) == [versions["a"]]


def _assert_canary_is(session: Session, version: str) -> None:
    repo = ModelVersionRepository(session)
    assert repo.resolve_alias(CANARY).id == version  # type: ignore[union-attr]
    assert repo.resolve_alias(PRODUCTION).id == version  # type: ignore[union-attr]
