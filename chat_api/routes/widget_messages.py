"""The widget's plain reply: `POST /v1/widget/conversations/{id}/messages`.

A customer message is stored and answered by the deployed student through the batcher
(`chat_api.replies.answer`: the turn commits first, no transaction is held while the model
works, the guarded reply is stored in a second short transaction); a reply with low confidence
or an out-of-scope intent hands the conversation to a human. `widget_stream` streams the same
reply over SSE.
"""

from __future__ import annotations

from fastapi import Request, status
from fastapi.responses import JSONResponse

from chat_api import live, replies
from chat_api.dependencies import DbSession, WidgetWrite
from chat_api.errors import error_body
from chat_api.routing import widget_router
from chat_api.schemas import MessageOut, NoModelBody, PostMessage, PostMessageOut
from chat_api.state import app_state, settings_of

router = widget_router()


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PostMessageOut,
    summary="Post a customer message and get the assistant's reply",
    responses={
        503: {
            "model": NoModelBody,
            "description": "No model is deployed: the message is stored, no reply is produced.",
        }
    },
)
async def post_message(
    request: Request, conversation_id: WidgetWrite, body: PostMessage, session: DbSession
) -> PostMessageOut | JSONResponse:
    replies.check_text(settings_of(request).api, body.text)
    state = app_state(request)
    try:
        answer = await replies.answer(
            session, state["batcher"], state["metrics"], conversation_id, body.text
        )
    except replies.NotAnswered as exc:
        live.announce_conversation(state, conversation_id)
        return _unanswered(exc)
    # Both steps committed: operators watching hear of the customer's message (and a handoff).
    live.announce_conversation(state, conversation_id)
    if answer.reply is not None and answer.reply.handoff:
        live.became_waiting(state, conversation_id)
    elif answer.handoff:
        live.announce_inbox(state)
    return PostMessageOut(
        message=MessageOut.model_validate(answer.message),
        reply=MessageOut.model_validate(answer.reply) if answer.reply else None,
        handoff=answer.handoff,
    )


def _unanswered(exc: replies.NotAnswered) -> JSONResponse:
    """503 for a message that was stored but got no reply (no model deployed, or the batcher
    failed); returned, not raised, so the message stays committed and the client sees it."""
    payload = error_body(exc.code, exc.detail)
    payload["message_id"] = str(exc.message.id)
    payload["message"] = MessageOut.model_validate(exc.message).model_dump(mode="json")
    return JSONResponse(payload, status_code=503, headers={"Retry-After": str(exc.retry_after)})
