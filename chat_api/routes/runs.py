"""Distillation runs for the dashboard: list them with stage, steps and metrics; trigger one;
cancel one.

Triggering only writes a queued run row (at most one active run: the database refuses a second
with 409); the workers' next monitor tick sends it to a worker. The API never talks to Celery.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status

from chat_api.dependencies import CurrentAdmin, CurrentOperator, DbSession
from chat_api.errors import ConflictError
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import ErrorBody, RunOut, TriggerRun
from feedback.models import RunTrigger
from feedback.repositories.audit import AuditRepository
from feedback.repositories.runs import RunRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    403: {"model": ErrorBody, "description": "Not an admin (cancelling)."},
    404: {"model": ErrorBody, "description": "No such run."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator/runs",
    tags=["operator"],
    responses=_ERRORS,
)

RunStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.get("", summary="Distillation runs, newest first")
def list_runs(
    _operator: CurrentOperator,
    session: DbSession,
    status: RunStatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[RunOut]:
    return [
        RunOut.model_validate(r) for r in RunRepository(session).list(limit=limit, status=status)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start a distillation run now (admins); a worker picks it up on its next tick",
    responses={409: {"model": ErrorBody, "description": "A run is already queued or running."}},
)
def trigger_run(body: TriggerRun, admin: CurrentAdmin, session: DbSession) -> RunOut:
    detail = {"by": str(admin.id), "reason": body.reason, "kind": body.kind}
    repo = RunRepository(session)
    run = repo.open_run(RunTrigger.MANUAL.value, detail, {"kind": body.kind})
    if run is None:
        active = repo.active()
        raise ConflictError(
            f"run {active.id if active else '?'} is already "
            f"{active.status if active else 'active'}; wait for it to finish or cancel it",
            code="run_active",
        )
    AuditRepository(session).by_operator(
        admin.id,
        "run.trigger",
        "distill_run",
        str(run.id),
        {"reason": body.reason, "kind": body.kind},
    )
    return RunOut.model_validate(run)


@router.get("/{run_id}", summary="One run")
def read_run(run_id: uuid.UUID, _operator: CurrentOperator, session: DbSession) -> RunOut:
    return RunOut.model_validate(RunRepository(session).get(run_id))


@router.post(
    "/{run_id}/cancel",
    summary="Cancel a queued or running run (admins)",
    responses={409: {"model": ErrorBody, "description": "The run has already finished."}},
)
def cancel_run(run_id: uuid.UUID, admin: CurrentAdmin, session: DbSession) -> RunOut:
    run = RunRepository(session).cancel(run_id)
    AuditRepository(session).by_operator(
        admin.id, "run.cancel", "distill_run", str(run.id), {"stage": run.stage}
    )
    return RunOut.model_validate(run)
