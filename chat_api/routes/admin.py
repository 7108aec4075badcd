"""Admin API: operators, API keys and the audit log. Admins only; every write is audited."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status

from chat_api.dependencies import CurrentAdmin, DbSession
from chat_api.errors import ConflictError
from chat_api.input_types import Text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    AuditEntryOut,
    CreateApiKey,
    CreateOperator,
    ErrorBody,
    OperatorOut,
    UpdateOperator,
)
from chat_api.state import settings_of
from feedback.repositories.audit import AuditRepository
from feedback.repositories.operators import ApiKeyRepository, OperatorRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or expired token."},
    403: {"model": ErrorBody, "description": "Not an admin."},
    404: {"model": ErrorBody, "description": "Not found."},
    409: {"model": ErrorBody, "description": "Conflicts with the current state."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}

router = APIRouter(
    route_class=TransactionEndingRoute, prefix="/v1/admin", tags=["admin"], responses=_ERRORS
)


@router.get("/operators", summary="All operators")
def list_operators(_admin: CurrentAdmin, session: DbSession) -> list[OperatorOut]:
    return [OperatorOut.model_validate(o) for o in OperatorRepository(session).list()]


@router.post("/operators", status_code=status.HTTP_201_CREATED, summary="Create an operator")
def create_operator(
    request: Request, body: CreateOperator, admin: CurrentAdmin, session: DbSession
) -> OperatorOut:
    operator = OperatorRepository(session).create(
        email=body.email,
        name=body.name,
        password=body.password,
        role=body.role,
        min_password_length=settings_of(request).auth.min_password_length,
    )
    AuditRepository(session).by_operator(
        admin.id,
        "operator.create",
        "operator",
        str(operator.id),
        {"email": operator.email, "role": operator.role},
    )
    return OperatorOut.model_validate(operator)


@router.patch("/operators/{operator_id}", summary="Activate, deactivate or change role")
def update_operator(
    operator_id: uuid.UUID, body: UpdateOperator, admin: CurrentAdmin, session: DbSession
) -> OperatorOut:
    repo = OperatorRepository(session)
    operator = repo.get(operator_id)
    if operator.id == admin.id and (body.active is False or body.role == "operator"):
        raise ConflictError("you cannot deactivate or demote yourself; ask another admin")
    changes: dict[str, Any] = {}
    if body.role is not None and body.role.value != operator.role:
        changes["role"] = {"from": operator.role, "to": body.role.value}
        operator.role = body.role.value
    if body.active is not None and body.active != operator.active:
        changes["active"] = {"from": operator.active, "to": body.active}
        repo.set_active(operator, body.active)
    if changes:
        AuditRepository(session).by_operator(
            admin.id, "operator.update", "operator", str(operator.id), changes
        )
    return OperatorOut.model_validate(operator)


@router.get("/api-keys", summary="All API keys (without secrets)")
def list_api_keys(_admin: CurrentAdmin, session: DbSession) -> list[ApiKeyOut]:
    return [ApiKeyOut.model_validate(k) for k in ApiKeyRepository(session).list()]


@router.post(
    "/api-keys", status_code=status.HTTP_201_CREATED, summary="Create an API key (shown once)"
)
def create_api_key(body: CreateApiKey, admin: CurrentAdmin, session: DbSession) -> ApiKeyCreated:
    issued = ApiKeyRepository(session).create(name=body.name, created_by=admin.id)
    AuditRepository(session).by_operator(
        admin.id,
        "api_key.create",
        "api_key",
        str(issued.api_key.id),
        {"name": issued.api_key.name, "prefix": issued.api_key.prefix},
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(issued.api_key).model_dump(), key=issued.key)


@router.delete(
    "/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key"
)
def revoke_api_key(key_id: uuid.UUID, admin: CurrentAdmin, session: DbSession) -> None:
    repo = ApiKeyRepository(session)
    api_key = repo.get(key_id)
    repo.revoke(api_key)
    AuditRepository(session).by_operator(
        admin.id, "api_key.revoke", "api_key", str(api_key.id), {"name": api_key.name}
    )


@router.get("/audit", summary="The audit log, newest first")
def audit_log(
    _admin: CurrentAdmin,
    session: DbSession,
    action: Annotated[Text | None, Query(max_length=80)] = None,
    target_id: Annotated[Text | None, Query(max_length=120)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    entries = AuditRepository(session).recent(limit=limit, action=action, target_id=target_id)
    return [AuditEntryOut.model_validate(e) for e in entries]
