"""The model registry: register bundles, point aliases (`production`, `canary`) at them.

The aliases move through `feedback.aliases` (one audit row per move, published after commit);
`set_alias` is its storage step.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.errors import Conflict, NotFound
from feedback.models import ModelAlias, ModelAliasEvent, ModelVersion, utcnow
from feedback.redaction import redact_text

PRODUCTION = "production"
CANARY = "canary"  # served to `canary.share` of conversations (feedback.canary)


class ModelVersionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def register(
        self,
        *,
        version_id: str,
        bundle_uri: str,
        checksum: str,
        metrics: dict[str, Any] | None = None,
        run_id: uuid.UUID | None = None,
        notes: str | None = None,
    ) -> ModelVersion:
        existing = self.session.get(ModelVersion, version_id)
        if existing is not None:
            if existing.checksum != checksum:
                raise Conflict(
                    f"model version {version_id} is already registered with another checksum; "
                    "bundles are immutable, export a new version instead"
                )
            return existing
        version = ModelVersion(
            id=version_id,
            bundle_uri=bundle_uri,
            checksum=checksum,
            metrics=metrics or {},
            run_id=run_id,
            notes=redact_text(notes) if notes else notes,
        )
        self.session.add(version)
        self.session.flush()
        return version

    def get(self, version_id: str) -> ModelVersion:
        version = self.session.get(ModelVersion, version_id)
        if version is None:
            raise NotFound(f"model version {version_id} is not registered")
        return version

    def list(self) -> Sequence[ModelVersion]:
        return self.session.scalars(
            select(ModelVersion).order_by(ModelVersion.created_at.desc())
        ).all()

    def resolve_alias(self, alias: str = PRODUCTION, *, fresh: bool = False) -> ModelVersion | None:
        """The version `alias` points at; `fresh` reads the row again from the database (what
        another transaction committed since this session first read it)."""
        row = self.session.get(ModelAlias, alias, populate_existing=fresh)
        if row is None:
            return None
        return self.session.get(ModelVersion, row.model_version_id)

    def set_alias(self, alias: str, version_id: str, *, reason: str | None = None) -> str | None:
        """Point `alias` at a version; returns the version it pointed at before."""
        self.get(version_id)
        row = self.session.get(ModelAlias, alias, with_for_update=True)
        previous = row.model_version_id if row is not None else None
        if row is None:
            self.session.add(ModelAlias(alias=alias, model_version_id=version_id))
        else:
            row.model_version_id = version_id
            row.updated_at = utcnow()
        self.session.add(
            ModelAliasEvent(
                alias=alias,
                model_version_id=version_id,
                previous_version_id=previous,
                reason=redact_text(reason) if reason else reason,
            )
        )
        self.session.flush()
        return previous

    def alias_history(self, alias: str = PRODUCTION) -> Sequence[ModelAliasEvent]:
        return self.session.scalars(
            select(ModelAliasEvent)
            .where(ModelAliasEvent.alias == alias)
            .order_by(ModelAliasEvent.id.desc())
        ).all()

    def alias_moves_between(
        self, start: dt.datetime, end: dt.datetime, alias: str = PRODUCTION
    ) -> Sequence[ModelAliasEvent]:
        """The alias's moves in [start, end), oldest first (the promotions a chart draws)."""
        return self.session.scalars(
            select(ModelAliasEvent)
            .where(
                ModelAliasEvent.alias == alias,
                ModelAliasEvent.at >= start,
                ModelAliasEvent.at < end,
            )
            .order_by(ModelAliasEvent.at)
        ).all()
