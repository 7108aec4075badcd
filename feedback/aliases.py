"""Moving the model aliases (`production`, `canary`): the one place where they move.

Every move goes through `move`: an admin's promote, rollback, canary start or stop (chat_api's
promotion routes), a deploy (`chatdistill deploy`, the quickstart, `bundle_runtime.deploy`), the
loop's promote step and the canary check's decision (`apply_canary_decision`). A move points the
alias (an alias event in `model_alias_events`) and writes exactly one audit row, both in the
caller's transaction, and returns a `Move`.

Unit of work: nothing here commits; the caller's does (the request's `TransactionEndingRoute`,
or `feedback.db.session_scope` in the CLI and the worker). Only after that commit does the
caller `publish(settings, move)` (the model-change event on Redis, `feedback.events`) and, in
an API process, swap the served model. Publishing or swapping earlier would announce or serve a
version that a failed commit never moved to.

Errors (`feedback.errors.Conflict`, answered as 409 with their code):
    NothingToRollBack   production never pointed at an earlier version
    NoChampion          a canary needs a production version to be compared with
    NoCanary            no canary is running (the alias is missing or equals production)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from feedback.canary import CanaryDecision
from feedback.errors import Conflict
from feedback.events import publish_model_change
from feedback.models import ActorType
from feedback.repositories.audit import AuditRepository
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository
from feedback.settings import Settings

CANARY_CHECK = "canary-check"  # the audit actor of the canary check's decisions


class NothingToRollBack(Conflict):
    code = "nothing_to_roll_back"


class NoChampion(Conflict):
    code = "no_champion"


class NoCanary(Conflict):
    code = "no_canary"


@dataclass(frozen=True)
class Actor:
    """Who moved an alias, as the audit log names them."""

    type: ActorType
    id: str | None = None

    @classmethod
    def operator(cls, operator_id: object) -> Actor:
        return cls(ActorType.OPERATOR, str(operator_id))


@dataclass(frozen=True)
class Move:
    """An alias move, made in a transaction not yet committed; publish it after the commit."""

    alias: str
    version_id: str
    previous_version_id: str | None
    reason: str


def move(
    session: Session,
    alias: str,
    version_id: str,
    *,
    actor: Actor,
    action: str,
    reason: str,
    details: dict[str, Any] | None = None,
    audit_target: str | None = None,
) -> Move:
    """Point `alias` at `version_id` and write its one audit row (`action`, about
    `audit_target`, by default the version). The row's details are alias, previous and reason,
    then `details` (which may override them). Raises NotFound for an unregistered version."""
    previous = ModelVersionRepository(session).set_alias(alias, version_id, reason=reason)
    AuditRepository(session).record(
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        target_type="model_version",
        target_id=audit_target or version_id,
        details={"alias": alias, "previous": previous, "reason": reason, **(details or {})},
    )
    return Move(alias=alias, version_id=version_id, previous_version_id=previous, reason=reason)


def promote(
    session: Session,
    version_id: str,
    *,
    actor: Actor,
    reason: str,
    action: str = "model.promote",
    details: dict[str, Any] | None = None,
) -> Move:
    """Serve `version_id` in production."""
    return move(
        session, PRODUCTION, version_id, actor=actor, action=action, reason=reason,
        details=details,
    )  # fmt: skip


def rollback_target(session: Session) -> str:
    """The version a rollback would serve: the one production pointed at before its last move."""
    history = ModelVersionRepository(session).alias_history(PRODUCTION)
    if not history or history[0].previous_version_id is None:
        raise NothingToRollBack(
            "production has no earlier version to roll back to; promote a version instead"
        )
    return history[0].previous_version_id


def rollback(session: Session, *, actor: Actor, reason: str) -> Move:
    """Point production back at the version it pointed at before its last move."""
    target = rollback_target(session)
    return move(session, PRODUCTION, target, actor=actor, action="model.rollback", reason=reason)


def canary_start_target(session: Session, version_id: str) -> str:
    """`version_id`, once it is sure a canary can start: it needs a production to compare with."""
    if ModelVersionRepository(session).resolve_alias(PRODUCTION) is None:
        raise NoChampion(
            "a canary is compared with production, and nothing is in production; promote first"
        )
    return version_id


def start_canary(session: Session, version_id: str, *, actor: Actor, reason: str) -> Move:
    """Serve `version_id` to the canary share of conversations, beside production."""
    target = canary_start_target(session, version_id)
    return move(session, CANARY, target, actor=actor, action="model.canary_start", reason=reason)


def canary_stop_target(session: Session) -> str:
    """The version stopping the canary serves to everyone: production's."""
    repo = ModelVersionRepository(session)
    champion, canary = repo.resolve_alias(PRODUCTION), repo.resolve_alias(CANARY)
    if champion is None or canary is None or canary.id == champion.id:
        raise NoCanary("no canary is running")
    return champion.id


def stop_canary(session: Session, *, actor: Actor, reason: str) -> Move:
    """End the canary: the alias points at production's version, all traffic goes there."""
    target = canary_stop_target(session)
    return move(session, CANARY, target, actor=actor, action="model.canary_stop", reason=reason)


def apply_canary_decision(session: Session, decision: CanaryDecision) -> Move | None:
    """Carry out the canary check's rollback or promotion; -> the move, or None (nothing to do,
    or the aliases changed since the check: a stale decision is dropped, the next check
    decides afresh). The audit row is about the canary version and carries the numbers."""
    if not decision.moves_an_alias or decision.canary_version is None:
        return None
    repo = ModelVersionRepository(session)
    champion, canary = repo.resolve_alias(PRODUCTION), repo.resolve_alias(CANARY)
    if champion is None or canary is None:
        return None
    if (champion.id, canary.id) != (decision.champion_version, decision.canary_version):
        return None
    if decision.action == "rollback":
        alias, target = CANARY, champion.id
        reason = f"canary {canary.id} rolled back: {decision.reason}"
    else:
        alias, target = PRODUCTION, canary.id
        reason = f"canary {canary.id} promoted: {decision.reason}"
    return move(
        session,
        alias,
        target,
        actor=Actor(ActorType.SYSTEM, CANARY_CHECK),
        action=f"model.canary_{decision.action}",
        reason=reason,
        audit_target=canary.id,
        details={
            "now": target,
            "reason": decision.reason,
            "since": decision.since.isoformat() if decision.since else None,
            "numbers": decision.numbers,
        },
    )


def publish(settings: Settings, done: Move) -> None:
    """After the transaction that made `done` committed: tell every API process (they also
    find the move by polling if the event is lost)."""
    publish_model_change(settings, alias=done.alias, version_id=done.version_id, reason=done.reason)
