"""Deploying a bundle: verify it, copy it into the artifact store, register it, move an alias.

Used by `chatdistill deploy` and the quickstart; the loop's promotion step uses `store_bundle`
and `seed_approved_answers`. Deploying also seeds the bundle's approved answers
(`Manifest.approved_seeds`) for intents that have none. The alias moves through
`feedback.aliases` (one audit row); the caller's unit of work commits and then publishes the
returned move (`feedback.aliases.publish`). The one module of the package that touches the
store (through `feedback`). The copy into the store is atomic (staging folder + rename) and
bundles there are immutable.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from bundle_runtime.manifest import BundleError, Manifest, bundle_checksum, verify_bundle
from feedback import aliases
from feedback.models import ActorType
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.model_versions import ModelVersionRepository


@dataclass(frozen=True)
class Deployed:
    manifest: Manifest
    bundle_dir: Path  # inside the artifact store
    previous: str | None  # the version the alias pointed at before
    move: aliases.Move  # publish it after the commit


def store_bundle(bundle_dir: Path, bundles_root: Path) -> tuple[Manifest, Path]:
    """Verify and copy a bundle to `bundles_root/<version>` (no-op if already there).

    The manifest's version is a plain name (`Manifest` refuses paths such as `../x`), and the
    copy keeps symbolic links as links so that the check of the copy refuses them rather than
    following them out of the bundle."""
    manifest = verify_bundle(bundle_dir)
    root = bundles_root.resolve()
    target = (root / manifest.model_version).resolve()
    if target.parent != root:
        raise BundleError(
            f"model_version {manifest.model_version!r} would place the bundle at {target}, "
            f"outside the artifact store {root}; export it under a plain version name"
        )
    if target == bundle_dir.resolve():
        return manifest, target
    if target.exists():
        if bundle_checksum(target) != bundle_checksum(bundle_dir):
            raise BundleError(
                f"{target} already holds a different bundle named {manifest.model_version}; "
                "bundles are immutable: export under a new version"
            )
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.incoming")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(bundle_dir, staging, symlinks=True)
        try:
            verify_bundle(staging)  # the copy, as it will serve: changed or linked files fail
        except BundleError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(target)
    verify_bundle(target)
    return manifest, target


def seed_approved_answers(session: Session, manifest: Manifest) -> list[str]:
    """The bundle's approved answers for intents that have none; -> the intents seeded."""
    return ApprovedAnswerRepository(session).seed(
        manifest.approved_seeds, model_version=manifest.model_version
    )


def deploy_bundle(
    session: Session,
    bundle_dir: Path,
    bundles_root: Path,
    *,
    alias: str,
    reason: str,
    actor_type: ActorType,
    actor_id: str | None = None,
) -> Deployed:
    manifest, target = store_bundle(bundle_dir, bundles_root)
    ModelVersionRepository(session).register(
        version_id=manifest.model_version,
        bundle_uri=str(target),
        checksum=bundle_checksum(target),
        metrics=manifest.metrics,
    )
    seeded = seed_approved_answers(session, manifest)
    moved = aliases.move(
        session,
        alias,
        manifest.model_version,
        actor=aliases.Actor(actor_type, actor_id),
        action="model.promote",
        reason=reason,
        details={"bundle": str(target), "seeded_approved_answers": seeded},
    )
    return Deployed(
        manifest=manifest, bundle_dir=target, previous=moved.previous_version_id, move=moved
    )
