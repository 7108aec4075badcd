"""OpenAI-compatible API for existing server-to-server clients (API key auth).

`/v1/models` lists the registered student versions. `/v1/chat/completions` answers with the
deployed student (greedy decoding: `temperature` is accepted and ignored; `max_tokens` caps the
reply); without a deployed model it says so (503). `user` turns are the customer's, `assistant`
turns the assistant's, `system` turns are not read (the student has no instructions channel).
Nothing is stored. `stream: true` is refused until streaming arrives with the serving issue.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from chat_api.dependencies import CurrentApiKey, DbSession
from chat_api.errors import error_response
from chat_api.schemas import (
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionUsage,
    ErrorBody,
    ModelCard,
    ModelList,
)
from chat_api.state import app_state
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
    response_model=ChatCompletion,
    summary="Chat completion from the deployed student",
    responses={
        404: {"model": ErrorBody, "description": "`model` names a model not served here."},
        503: {"model": ErrorBody, "description": "No model is deployed."},
    },
)
def chat_completions(
    request: Request, body: ChatCompletionRequest, _key: CurrentApiKey, session: DbSession
) -> ChatCompletion | JSONResponse:
    if not any(m.role == "user" for m in body.messages):
        return error_response(422, "validation_error", "messages need at least one user turn")
    if body.stream:
        return error_response(
            422,
            "streaming_unsupported",
            "`stream: true` is not supported yet: streaming arrives with the serving issue. "
            "Send the request without `stream` to get the whole reply at once",
        )
    engine = app_state(request)["engine"]
    loaded = engine.current
    if loaded is None:
        return error_response(
            503,
            "no_model_deployed",
            "No model is deployed on this server. Deploy one with `chatdistill deploy BUNDLE_DIR`.",
            headers={"Retry-After": "60"},
        )
    if body.model is not None and body.model != loaded.version_id:
        return error_response(
            404,
            "model_not_found",
            f"model {body.model!r} is not served here; this server serves "
            f"{loaded.version_id!r}. Omit `model` or send that id",
        )
    roles = {"user": "customer", "assistant": "assistant"}
    turns = [(roles[m.role], m.content) for m in body.messages if m.role in roles]
    version, reply = engine.reply(turns, body.max_tokens)
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=version,
        choices=[
            ChatCompletionChoice(
                index=0,
                message=ChatCompletionMessage(content=reply.text),
                finish_reason=reply.finish_reason,
            )
        ],
        usage=ChatCompletionUsage(
            prompt_tokens=reply.source_tokens,
            completion_tokens=len(reply.tokens),
            total_tokens=reply.source_tokens + len(reply.tokens),
        ),
    )
