"""Promote a registered model version to production, or roll back to the one before it.

Admins only. The bundle is verified and loaded into this API process first (a bundle that
cannot serve is refused and nothing moves), then the `production` alias moves and the audit log
records who, when and why, in the same transaction.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from chat_api.dependencies import CurrentAdmin, CurrentOperator, DbSession
from chat_api.errors import ConflictError
from chat_api.runtime.serving import bundle_path
from chat_api.schemas import AliasEventOut, ErrorBody, PromoteModel, PromotionOut
from chat_api.state import app_state
from feedback.bundle import BundleError
from feedback.models import Operator
from feedback.repositories.audit import AuditRepository
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    403: {"model": ErrorBody, "description": "Not an admin."},
    404: {"model": ErrorBody, "description": "No such model version."},
    422: {"model": ErrorBody, "description": "Invalid input."},
    409: {"model": ErrorBody, "description": "Nothing to roll back to, or the bundle is unusable."},
}

router = APIRouter(prefix="/v1/operator/models", tags=["operator"], responses=_ERRORS)


@router.get("/history", summary="Which version production pointed at, and when (newest first)")
def production_history(_operator: CurrentOperator, session: DbSession) -> list[AliasEventOut]:
    events = ModelVersionRepository(session).alias_history(PRODUCTION)
    return [AliasEventOut.model_validate(e) for e in events]


@router.post("/{version_id}/promote", summary="Serve this version in production")
def promote(
    request: Request, version_id: str, body: PromoteModel, admin: CurrentAdmin, session: DbSession
) -> PromotionOut:
    return _move_production(request, session, admin, version_id, body.reason, "model.promote")


@router.post("/rollback", summary="Serve the version production pointed at before")
def rollback(
    request: Request, body: PromoteModel, admin: CurrentAdmin, session: DbSession
) -> PromotionOut:
    history = ModelVersionRepository(session).alias_history(PRODUCTION)
    if not history or history[0].previous_version_id is None:
        raise ConflictError(
            "production has no earlier version to roll back to; promote a version instead",
            code="nothing_to_roll_back",
        )
    target = history[0].previous_version_id
    return _move_production(request, session, admin, target, body.reason, "model.rollback")


def _move_production(
    request: Request, session: Session, admin: Operator, version_id: str, reason: str, action: str
) -> PromotionOut:
    repo = ModelVersionRepository(session)
    version = repo.get(version_id)
    engine = app_state(request)["engine"]
    try:
        engine.load(bundle_path(version.bundle_uri), version.id, checksum=version.checksum)
    except BundleError as exc:
        raise ConflictError(
            f"version {version_id} cannot serve: {exc}", code="bundle_unusable"
        ) from None
    previous = repo.set_alias(PRODUCTION, version.id, reason=reason)
    AuditRepository(session).by_operator(
        admin.id,
        action,
        "model_version",
        version.id,
        {"alias": PRODUCTION, "previous": previous, "reason": reason},
    )
    current = engine.current
    return PromotionOut(
        alias=PRODUCTION,
        model_version_id=version.id,
        previous_version_id=previous,
        serving=current.version_id if current else None,
    )
