"""Promote a registered model version to production, or roll back to the one before it;
start or stop a canary (the `canary` alias, served to `canary.share` of conversations).

Admins only. The handler reads which version the move would serve and ends that read: no
transaction is open while the bundle loads beside the served models (a bundle that cannot serve
is refused with 409 and nothing moves). `feedback.aliases` then moves the alias and writes the
audit row (who, when, why) in a short transaction; only after it committed does this process
swap the model and publish the move to the other API processes (which also find it by polling
if the event is lost). A failed commit leaves the served model as it was; an alias moved by
someone else while the bundle loaded answers 409 `concurrent_move`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from bundle_runtime.manifest import BundleError
from chat_api.dependencies import CurrentAdmin, CurrentOperator, DbSession
from chat_api.errors import ConflictError
from chat_api.input_types import Text
from chat_api.routing import TransactionEndingRoute
from chat_api.runtime.serving import bundle_path
from chat_api.schemas import AliasEventOut, ErrorBody, PromoteModel, PromotionOut
from chat_api.state import app_state
from feedback import aliases
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository

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
    request: Request, version_id: Text, body: PromoteModel, admin: CurrentAdmin,
    session: DbSession,
) -> PromotionOut:  # fmt: skip
    actor = aliases.Actor.operator(admin.id)
    return _serve_after_commit(
        request, session, version_id,
        lambda: aliases.promote(session, version_id, actor=actor, reason=body.reason),
    )  # fmt: skip


@router.post(
    "/{version_id}/canary", summary="Serve this version to the canary share of conversations"
)
def start_canary(
    request: Request, version_id: Text, body: PromoteModel, admin: CurrentAdmin,
    session: DbSession,
) -> PromotionOut:  # fmt: skip
    if app_state(request)["settings"].canary.share <= 0.0:
        raise ConflictError(
            "canaries are off (canary.share is 0); set CHATDISTILL_CANARY__SHARE, e.g. 0.1, "
            "on every API process first",
            code="canary_off",
        )
    actor = aliases.Actor.operator(admin.id)
    return _serve_after_commit(
        request, session, aliases.canary_start_target(session, version_id),
        lambda: aliases.start_canary(session, version_id, actor=actor, reason=body.reason),
    )  # fmt: skip


@router.post("/canary/stop", summary="End the canary: all conversations go to production")
def stop_canary(
    request: Request, body: PromoteModel, admin: CurrentAdmin, session: DbSession
) -> PromotionOut:
    actor = aliases.Actor.operator(admin.id)
    return _serve_after_commit(
        request, session, aliases.canary_stop_target(session),
        lambda: aliases.stop_canary(session, actor=actor, reason=body.reason),
    )  # fmt: skip


@router.post("/rollback", summary="Serve the version production pointed at before")
def rollback(
    request: Request, body: PromoteModel, admin: CurrentAdmin, session: DbSession
) -> PromotionOut:
    actor = aliases.Actor.operator(admin.id)
    return _serve_after_commit(
        request, session, aliases.rollback_target(session),
        lambda: aliases.rollback(session, actor=actor, reason=body.reason),
    )  # fmt: skip


def _serve_after_commit(
    request: Request, session: Session, target: str, make_move: Callable[[], aliases.Move]
) -> PromotionOut:
    """Load `target`'s bundle beside the served ones with no transaction open (BundleError:
    409, nothing moves), make and commit the move, then swap it in here and publish it."""
    repo = ModelVersionRepository(session)
    version = repo.get(target)  # NotFound: 404
    bundle, checksum = bundle_path(version.bundle_uri), version.checksum
    session.commit()  # end the reads: nothing is held while the bundle loads
    engine = app_state(request)["engine"]
    try:
        loaded = engine.prepare(bundle, target, checksum=checksum)
    except BundleError as exc:
        raise ConflictError(
            f"version {target} cannot serve: {exc}", code="bundle_unusable"
        ) from None
    move = make_move()
    if move.version_id != target:
        session.rollback()
        raise ConflictError(
            f"the aliases moved while version {target} loaded (the move would now serve "
            f"{move.version_id}); look at the model history and try again",
            code="concurrent_move",
        )
    champion = repo.resolve_alias(PRODUCTION)
    to_canary = move.alias == CANARY and (champion is None or champion.id != target)
    session.commit()  # the move is durable: only now does this process serve it
    engine.install(loaded, canary=to_canary)
    serving_canary = engine.canary
    if move.alias == CANARY and not to_canary:
        engine.clear_canary()
    elif move.alias == PRODUCTION and serving_canary and serving_canary.version_id == target:
        engine.clear_canary()  # the canary became the champion
    aliases.publish(app_state(request)["settings"], move)
    current = engine.canary if to_canary else engine.current
    return PromotionOut(
        alias=move.alias,
        model_version_id=move.version_id,
        previous_version_id=move.previous_version_id,
        serving=current.version_id if current else None,
    )
