"""The registered model versions and which one serves production (the dashboard's list)."""

from __future__ import annotations

from fastapi import APIRouter

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import OPERATOR_ERRORS
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import ModelVersionOut
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)


@router.get("/models", summary="Registered model versions and their aliases")
def list_models(_operator: CurrentOperator, session: DbSession) -> list[ModelVersionOut]:
    repo = ModelVersionRepository(session)
    production = repo.resolve_alias(PRODUCTION)
    return [
        ModelVersionOut(
            id=v.id,
            bundle_uri=v.bundle_uri,
            checksum=v.checksum,
            metrics=v.metrics,
            created_at=v.created_at,
            aliases=[PRODUCTION] if production is not None and production.id == v.id else [],
        )
        for v in repo.list()
    ]
