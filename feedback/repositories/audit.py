"""Writing and reading the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import ActorType, AuditEntry
from feedback.redaction import redact_text

# Detail values that a person types as free text (why a model was promoted or a run started):
# PII-redacted before they are stored, like every text the store keeps. Other values are ids,
# names and flags the code sets, kept as they are.
FREE_TEXT_KEYS = frozenset({"reason", "note", "comment"})


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        *,
        actor_type: ActorType,
        actor_id: str | None,
        action: str,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            actor_type=actor_type.value,
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=redacted_details(details or {}),
        )
        self.session.add(entry)
        self.session.flush()
        return entry

    def by_operator(
        self,
        operator_id: object,
        action: str,
        target_type: str,
        target_id: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """An operator's write, attributed to them."""
        return self.record(
            actor_type=ActorType.OPERATOR,
            actor_id=str(operator_id),
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )

    def recent(
        self, *, limit: int = 100, action: str | None = None, target_id: str | None = None
    ) -> Sequence[AuditEntry]:
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        if target_id is not None:
            stmt = stmt.where(AuditEntry.target_id == target_id)
        return self.session.scalars(stmt).all()


def redacted_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` with the values under `FREE_TEXT_KEYS` PII-redacted."""
    return {
        key: redact_text(value) if key in FREE_TEXT_KEYS and isinstance(value, str) else value
        for key, value in details.items()
    }
