"""Promote a registered model version to production, or roll back to the one before it;
start or stop a canary (the `canary` alias, served to `canary.share` of conversations).

Admins only. The bundle is verified and loaded into this API process first (a bundle that
cannot serve is refused and nothing moves), then the alias moves and the audit log records who,
when and why, in the same transaction. After the commit (a background task runs after the
response, so after the session dependency committed) a model-change event tells the other API
processes, which also find the move by polling if the event is lost.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy.orm import Session

from bundle_runtime.manifest import BundleError
from chat_api.dependencies import CurrentAdmin, CurrentOperator, DbSession
from chat_api.errors import ConflictError
from chat_api.input_types import Text
from chat_api.routing import TransactionEndingRoute
from chat_api.runtime.serving import bundle_path
from chat_api.schemas import AliasEventOut, ErrorBody, PromoteModel, PromotionOut
from chat_api.state import app_state
from feedback.events import publish_model_change
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

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator/models",
    tags=["operator"],
    responses=_ERRORS,
)


CANARY = "canary"


@router.get("/history", summary="Which version an alias pointed at, and when (newest first)")
def production_history(
    _operator: CurrentOperator,
    session: DbSession,
    alias: Literal["production", "canary"] = "production",
) -> list[AliasEventOut]:
    events = ModelVersionRepository(session).alias_history(alias)
    return [AliasEventOut.model_validate(e) for e in events]


@router.post("/{version_id}/promote", summary="Serve this version in production")
def promote(
    request: Request,
    version_id: Text,
    body: PromoteModel,
    admin: CurrentAdmin,
    session: DbSession,
    tasks: BackgroundTasks,
) -> PromotionOut:
    out = _move(request, session, admin, PRODUCTION, version_id, body.reason, "model.promote")
    _announce(request, tasks, out)
    return out


@router.post(
    "/{version_id}/canary", summary="Serve this version to the canary share of conversations"
)
def start_canary(
    request: Request,
    version_id: Text,
    body: PromoteModel,
    admin: CurrentAdmin,
    session: DbSession,
    tasks: BackgroundTasks,
) -> PromotionOut:
    if app_state(request)["settings"].canary.share <= 0.0:
        raise ConflictError(
            "canaries are off (canary.share is 0); set CHATDISTILL_CANARY__SHARE, e.g. 0.1, "
            "on every API process first",
            code="canary_off",
        )
    if ModelVersionRepository(session).resolve_alias(PRODUCTION) is None:
        raise ConflictError(
            "a canary is compared with production, and nothing is in production; promote first",
            code="no_champion",
        )
    out = _move(request, session, admin, CANARY, version_id, body.reason, "model.canary_start")
    _announce(request, tasks, out)
    return out


@router.post("/canary/stop", summary="End the canary: all conversations go to production")
def stop_canary(
    request: Request, body: PromoteModel, admin: CurrentAdmin, session: DbSession,
    tasks: BackgroundTasks,
) -> PromotionOut:  # fmt: skip
    repo = ModelVersionRepository(session)
    champion, canary = repo.resolve_alias(PRODUCTION), repo.resolve_alias(CANARY)
    if champion is None or canary is None or canary.id == champion.id:
        raise ConflictError("no canary is running", code="no_canary")
    out = _move(request, session, admin, CANARY, champion.id, body.reason, "model.canary_stop")
    _announce(request, tasks, out)
    return out


@router.post("/rollback", summary="Serve the version production pointed at before")
def rollback(
    request: Request,
    body: PromoteModel,
    admin: CurrentAdmin,
    session: DbSession,
    tasks: BackgroundTasks,
) -> PromotionOut:
    history = ModelVersionRepository(session).alias_history(PRODUCTION)
    if not history or history[0].previous_version_id is None:
        raise ConflictError(
            "production has no earlier version to roll back to; promote a version instead",
            code="nothing_to_roll_back",
        )
    target = history[0].previous_version_id
    out = _move(request, session, admin, PRODUCTION, target, body.reason, "model.rollback")
    _announce(request, tasks, out)
    return out


def _move(
    request: Request,
    session: Session,
    admin: Operator,
    alias: str,
    version_id: str,
    reason: str,
    action: str,
) -> PromotionOut:
    repo = ModelVersionRepository(session)
    version = repo.get(version_id)
    engine = app_state(request)["engine"]
    champion = repo.resolve_alias(PRODUCTION)
    to_canary = alias == CANARY and (champion is None or champion.id != version.id)
    try:
        engine.load(
            bundle_path(version.bundle_uri), version.id, checksum=version.checksum,
            canary=to_canary,
        )  # fmt: skip
    except BundleError as exc:
        raise ConflictError(
            f"version {version_id} cannot serve: {exc}", code="bundle_unusable"
        ) from None
    serving_canary = engine.canary
    if alias == CANARY and not to_canary:
        engine.clear_canary()
    elif alias == PRODUCTION and serving_canary and serving_canary.version_id == version.id:
        engine.clear_canary()  # the canary became the champion
    previous = repo.set_alias(alias, version.id, reason=reason)
    AuditRepository(session).by_operator(
        admin.id,
        action,
        "model_version",
        version.id,
        {"alias": alias, "previous": previous, "reason": reason},
    )
    current = engine.canary if to_canary else engine.current
    return PromotionOut(
        alias=alias,
        model_version_id=version.id,
        previous_version_id=previous,
        serving=current.version_id if current else None,
    )


def _announce(request: Request, tasks: BackgroundTasks, out: PromotionOut) -> None:
    """Publish after the response, i.e. after the session dependency committed the move."""
    settings = app_state(request)["settings"]
    tasks.add_task(
        publish_model_change,
        settings,
        alias=out.alias,
        version_id=out.model_version_id,
        reason=f"{out.alias} moved by an admin",
    )
