"""Operator API for approved answers: the reply the serving guard sends for an intent when a
generated one is unfit (`bundle_runtime.guard`). Any signed-in operator may set one, from text
or from an assistant reply (its newest correction if it has one); every write is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.input_types import Text
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import ApprovedAnswerOut, ErrorBody, SetApprovedAnswer
from feedback.errors import InvalidInput
from feedback.models import MessageRole
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import CorrectionRepository

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired token."},
    404: {"model": ErrorBody, "description": "No such intent answer or message."},
    422: {"model": ErrorBody, "description": "Invalid input."},
}
Intent = Path(min_length=1, max_length=120, description="The intent label, as the bundle has it.")

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator/approved-answers",
    tags=["operator"],
    responses=_ERRORS,
)


@router.get("", summary="The approved answers, by intent")
def list_answers(_operator: CurrentOperator, session: DbSession) -> list[ApprovedAnswerOut]:
    return [ApprovedAnswerOut.model_validate(a) for a in ApprovedAnswerRepository(session).all()]


@router.put("/{intent}", summary="Set an intent's approved answer (from text or a reply)")
def set_answer(
    body: SetApprovedAnswer,
    operator: CurrentOperator,
    session: DbSession,
    intent: Annotated[Text, Intent],
) -> ApprovedAnswerOut:
    text = body.text
    if text is None and body.message_id is None:
        raise InvalidInput("give the answer's `text`, or the `message_id` of a reply")
    if body.message_id is not None:
        # The reply must exist (404) and be the bot's, also when `text` rewrites it.
        message = ConversationRepository(session).get_message(body.message_id)
        if message.role != MessageRole.ASSISTANT.value:
            raise InvalidInput("only an assistant reply can become an approved answer")
    if text is None:
        corrected = [
            c.corrected_text
            for c in CorrectionRepository(session).for_conversation(message.conversation_id)
            if c.message_id == message.id and c.corrected_text
        ]
        text = corrected[-1] if corrected else message.text
    repo = ApprovedAnswerRepository(session)
    previous = repo.get(intent)
    details = {"message_id": str(body.message_id) if body.message_id else None}
    details["replaced"] = previous.source if previous is not None else None
    answer = repo.set(intent, text, operator_id=operator.id, message_id=body.message_id)
    AuditRepository(session).by_operator(
        operator.id, "approved_answer.set", "intent", intent, details
    )
    return ApprovedAnswerOut.model_validate(answer)


@router.delete(
    "/{intent}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an approved answer"
)
def delete_answer(
    operator: CurrentOperator, session: DbSession, intent: Annotated[Text, Intent]
) -> None:
    ApprovedAnswerRepository(session).delete(intent)
    AuditRepository(session).by_operator(operator.id, "approved_answer.delete", "intent", intent)
