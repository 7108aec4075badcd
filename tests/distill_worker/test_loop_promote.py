"""The loop's promote step on real PostgreSQL: it moves production through the aliases service
(the candidate registered by the `register` step is not registered again), seeds the bundle's
approved answers, and writes exactly one audit row, carrying the gate's numbers."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bundle_runtime.deploy import store_bundle
from bundle_runtime.manifest import bundle_checksum
from distill_worker.loop.context import LoopContext
from distill_worker.loop.lease import Lease
from distill_worker.loop.steps import RunState, promote
from feedback.models import AuditEntry, ModelAliasEvent
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.runs import RunRepository
from feedback.settings import Settings
from tests.fixtures.tiny_bundle import TinyBundle

OWNER = "worker-a"


def test_the_promote_step_moves_production_with_one_audit_row(
    db: Session, session_factory: sessionmaker[Session], tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = LoopContext(settings, _factory=session_factory, _pid=os.getpid())
    manifest, stored = store_bundle(tiny_bundle.path, settings.bundles_dir)
    versions = ModelVersionRepository(db)
    versions.register(version_id="mv-old", bundle_uri="/bundles/old", checksum="0" * 64)
    versions.set_alias(PRODUCTION, "mv-old", reason="the champion")
    version = manifest.model_version
    versions.register(version_id=version, bundle_uri=str(stored), checksum=bundle_checksum(stored))
    runs = RunRepository(db)
    run = runs.open_run("manual", {}, {})
    assert run is not None and runs.claim(run.id, OWNER, lease_s=60) is not None
    db.commit()
    verdict = {"passed": True, "reasons": [], "notes": [], "champion_version": "mv-old"}
    state = RunState(
        id=run.id,
        trigger="manual",
        config={},
        steps={
            "evaluate": verdict,
            "register": {"model_version": version, "bundle_dir": str(stored)},
        },
    )

    result = promote(ctx, state, Lease(ctx, run.id, OWNER))

    assert result == {"model_version": version, "previous": "mv-old"}
    assert versions.resolve_alias(PRODUCTION).id == version  # type: ignore[union-attr]
    moves = db.scalar(
        select(func.count())
        .select_from(ModelAliasEvent)
        .where(ModelAliasEvent.model_version_id == version)
    )
    assert moves == 1
    entries = db.scalars(select(AuditEntry).where(AuditEntry.target_id == version)).all()
    assert [e.action for e in entries] == ["run.promote"]
    assert entries[0].actor_id == f"run:{run.id}"
    assert entries[0].details["gate"]["passed"] is True
    assert entries[0].details["previous"] == "mv-old"
    assert entries[0].details["seeded_approved_answers"] == ["refund"]
    assert ApprovedAnswerRepository(db).get("refund") is not None
    db.refresh(run)
    assert run.steps["promote"] == {"done": True, "model_version": version, "previous": "mv-old"}
