"""The aliases service on real PostgreSQL: every move is one alias event and exactly one audit
row, in the caller's transaction; rollback and the canary's start and stop refuse what the
current aliases do not allow, with the codes the API answers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from feedback import aliases
from feedback.errors import NotFound
from feedback.models import ActorType, AuditEntry, ModelAliasEvent
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository

ADMIN = aliases.Actor(ActorType.OPERATOR, "admin-1")


@pytest.fixture
def repo(db: Session) -> ModelVersionRepository:
    repo = ModelVersionRepository(db)
    for version in ("mv-1", "mv-2"):
        repo.register(version_id=version, bundle_uri=f"/bundles/{version}", checksum="0" * 64)
    return repo


def _audit(db: Session) -> list[AuditEntry]:
    return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all())


def _events(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ModelAliasEvent)) or 0


def test_a_promotion_is_one_alias_event_and_one_audit_row(
    db: Session, repo: ModelVersionRepository
) -> None:
    first = aliases.promote(db, "mv-1", actor=ADMIN, reason="first")
    second = aliases.promote(db, "mv-2", actor=ADMIN, reason="better")
    assert (first.previous_version_id, second.previous_version_id) == (None, "mv-1")
    assert second == aliases.Move(PRODUCTION, "mv-2", "mv-1", "better")
    assert repo.resolve_alias(PRODUCTION).id == "mv-2"  # type: ignore[union-attr]
    assert _events(db) == 2
    entries = _audit(db)
    assert [(e.action, e.target_id) for e in entries] == [
        ("model.promote", "mv-1"),
        ("model.promote", "mv-2"),
    ]
    assert (entries[1].actor_type, entries[1].actor_id) == ("operator", "admin-1")
    assert entries[1].details == {"alias": PRODUCTION, "previous": "mv-1", "reason": "better"}


def test_a_rollback_goes_to_the_version_before_and_is_audited_once(
    db: Session, repo: ModelVersionRepository
) -> None:
    with pytest.raises(aliases.NothingToRollBack) as refused:
        aliases.rollback(db, actor=ADMIN, reason="x")
    assert refused.value.code == "nothing_to_roll_back"
    aliases.promote(db, "mv-1", actor=ADMIN, reason="first")
    aliases.promote(db, "mv-2", actor=ADMIN, reason="second")
    back = aliases.rollback(db, actor=ADMIN, reason="worse")
    assert (back.version_id, back.previous_version_id) == ("mv-1", "mv-2")
    assert [e.action for e in _audit(db)].count("model.rollback") == 1
    assert _events(db) == 3


def test_a_canary_needs_a_champion_and_stops_on_it(
    db: Session, repo: ModelVersionRepository
) -> None:
    with pytest.raises(aliases.NoChampion):
        aliases.start_canary(db, "mv-2", actor=ADMIN, reason="try")
    aliases.promote(db, "mv-1", actor=ADMIN, reason="first")
    with pytest.raises(aliases.NoCanary):
        aliases.stop_canary(db, actor=ADMIN, reason="none yet")
    started = aliases.start_canary(db, "mv-2", actor=ADMIN, reason="try")
    assert (started.alias, started.version_id) == (CANARY, "mv-2")
    stopped = aliases.stop_canary(db, actor=ADMIN, reason="enough")
    assert (stopped.alias, stopped.version_id, stopped.previous_version_id) == (
        CANARY,
        "mv-1",
        "mv-2",
    )
    with pytest.raises(aliases.NoCanary) as again:
        aliases.stop_canary(db, actor=ADMIN, reason="again")
    assert again.value.code == "no_canary"
    actions = [e.action for e in _audit(db)]
    assert actions == ["model.promote", "model.canary_start", "model.canary_stop"]


def test_an_unregistered_version_moves_nothing(db: Session, repo: ModelVersionRepository) -> None:
    with pytest.raises(NotFound):
        aliases.promote(db, "mv-nope", actor=ADMIN, reason="x")
    assert _audit(db) == [] and _events(db) == 0
