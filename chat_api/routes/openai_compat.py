"""OpenAI-compatible API for existing server-to-server clients (API key auth).

`/v1/models` lists the registered student versions. `/v1/chat/completions` answers with the
deployed student once the serving runtime is in place; without a deployed model it says so (503).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from chat_api.dependencies import CurrentApiKey, DbSession
from chat_api.errors import error_response
from chat_api.schemas import ChatCompletionRequest, ErrorBody, ModelCard, ModelList
from feedback.repositories.model_versions import ModelVersionRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or revoked API key."},
    422: {"model": ErrorBody, "description": "Invalid request."},
}

router = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=_ERRORS)


@router.get("/models", summary="Registered student versions")
def list_models(_key: CurrentApiKey, session: DbSession) -> ModelList:
    versions = ModelVersionRepository(session).list()
    return ModelList(
        data=[ModelCard(id=v.id, created=int(v.created_at.timestamp())) for v in versions]
    )


@router.post(
    "/chat/completions",
    summary="Chat completion from the deployed student",
    responses={503: {"model": ErrorBody, "description": "No model is deployed."}},
)
def chat_completions(
    body: ChatCompletionRequest, _key: CurrentApiKey, session: DbSession
) -> JSONResponse:
    if not any(m.role == "user" for m in body.messages):
        return error_response(422, "validation_error", "messages need at least one user turn")
    return error_response(
        503,
        "no_model_deployed",
        "No model is deployed on this server. Deploy one with `chatdistill deploy BUNDLE_DIR`.",
        headers={"Retry-After": "60"},
    )
