"""The promotion routes on a running app with real bundles: this process swaps its model only
after the alias move committed (a failed commit leaves the served model and the aliases as they
were), and one promotion writes one audit row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from chat_api.app import create_app
from chat_api.runtime.serving import ReplyEngine
from feedback import aliases
from feedback.models import ActorType, AuditEntry, ModelAliasEvent, OperatorRole
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from tests.fixtures.hot_swap import app_settings, in_store
from tests.fixtures.operators import make_operator

PASSWORD = "correct horse battery staple"


class FailingCommits:
    """Sessions whose commit fails, while `failing`, when their transaction moved an alias."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.failing = False
        event.listen(self.factory, "before_flush", self._note_move)
        event.listen(self.factory, "before_commit", self._maybe_fail)

    def _note_move(self, session: Session, _context: object, _instances: object) -> None:
        if any(isinstance(row, ModelAliasEvent) for row in session.new):
            session.info["moved_an_alias"] = True

    def _maybe_fail(self, session: Session) -> None:
        if session.info.pop("moved_an_alias", False) and self.failing:
            raise RuntimeError("the database went away during the commit")


@pytest.fixture
def commits(store_url: str) -> Iterator[FailingCommits]:
    sessions = FailingCommits(store_url)
    yield sessions
    sessions.engine.dispose()


def served_version(client: TestClient) -> str:
    started = client.post("/v1/widget/conversations", json={}).json()
    response = client.post(
        f"/v1/widget/conversations/{started['conversation_id']}/messages",
        json={"text": "where is my order"},
        headers={"Authorization": f"Bearer {started['token']}"},
    )
    assert response.status_code == 201, response.text
    version = response.json()["reply"]["model_version"]
    assert isinstance(version, str)
    return version


def admin_headers(client: TestClient, url: str) -> dict[str, str]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    in_store(url, lambda s: make_operator(s, role=OperatorRole.ADMIN, email=email))
    token = client.post("/v1/operator/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _audit_of(url: str, version: str) -> list[tuple[str, object]]:
    """(action, details' previous) of the audit rows about `version`, oldest first."""
    found: list[tuple[str, object]] = []

    def read(session: Session) -> None:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.target_id == version).order_by(AuditEntry.id)
        )
        found.extend((row.action, row.details.get("previous")) for row in rows)

    in_store(url, read)
    return found


def _production(url: str) -> str | None:
    found: list[str | None] = []

    def read(session: Session) -> None:
        row = ModelVersionRepository(session).resolve_alias(PRODUCTION)
        found.append(row.id if row is not None else None)

    in_store(url, read)
    return found[0]


def test_a_failed_commit_leaves_the_served_model_unchanged(
    store_url: str, versions: dict[str, str], tmp_path: Path, commits: FailingCommits
) -> None:
    app = create_app(app_settings(tmp_path, store_url), session_factory=commits.factory)
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = admin_headers(client, store_url)
        assert served_version(client) == versions["a"]
        commits.failing = True
        failed = client.post(
            f"/v1/operator/models/{versions['b']}/promote", json={"reason": "go"}, headers=headers
        )
        assert failed.status_code == 500, failed.text
        commits.failing = False
        assert served_version(client) == versions["a"]  # the bundle was loaded, never served
        assert _production(store_url) == versions["a"]
        assert _audit_of(store_url, versions["b"]) == []

        promoted = client.post(
            f"/v1/operator/models/{versions['b']}/promote", json={"reason": "go"}, headers=headers
        )
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["serving"] == versions["b"]
        assert served_version(client) == versions["b"]


def test_one_promotion_writes_one_audit_row(
    store_url: str, versions: dict[str, str], tmp_path: Path
) -> None:
    with TestClient(create_app(app_settings(tmp_path, store_url))) as client:
        response = client.post(
            f"/v1/operator/models/{versions['b']}/promote",
            json={"reason": "better"},
            headers=admin_headers(client, store_url),
        )
        assert response.status_code == 200, response.text
    assert _audit_of(store_url, versions["b"]) == [("model.promote", versions["a"])]


def test_an_alias_moved_while_the_bundle_loaded_is_not_overwritten(
    store_url: str, versions: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction is open while the bundle loads, so another admin can move production
    meanwhile; the rollback then refuses (409) rather than serve what it did not load."""
    real_prepare = ReplyEngine.prepare

    def prepare_while_another_admin_promotes(self: ReplyEngine, *args: Any, **kw: Any) -> Any:
        loaded = real_prepare(self, *args, **kw)
        other = aliases.Actor(ActorType.CLI, "other-admin")
        in_store(store_url, lambda s: aliases.promote(s, versions["a"], actor=other, reason="x"))
        return loaded

    with TestClient(create_app(app_settings(tmp_path, store_url))) as client:
        headers = admin_headers(client, store_url)
        promoted = client.post(
            f"/v1/operator/models/{versions['b']}/promote", json={"reason": "go"}, headers=headers
        )
        assert promoted.status_code == 200, promoted.text
        monkeypatch.setattr(ReplyEngine, "prepare", prepare_while_another_admin_promotes)
        refused = client.post("/v1/operator/models/rollback", json={"reason": "r"}, headers=headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "concurrent_move"
        assert served_version(client) == versions["b"]  # nothing swapped in this process
    assert _production(store_url) == versions["a"]  # the other admin's move stands
    assert [a for a, _ in _audit_of(store_url, versions["a"])] == ["model.promote"]
