"""Operator corrections: correct an assistant reply and/or its intent, label a message's intent.

Every write is recorded in the audit log in the same transaction.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from chat_api.dependencies import CurrentOperator, DbSession
from chat_api.errors import OPERATOR_ERRORS
from chat_api.routing import TransactionEndingRoute
from chat_api.schemas import CorrectionOut, CorrectReply, ErrorBody, LabelIntent
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.ratings import CorrectionRepository

router = APIRouter(
    route_class=TransactionEndingRoute,
    prefix="/v1/operator",
    tags=["operator"],
    responses=OPERATOR_ERRORS,
)


@router.post(
    "/messages/{message_id}/correction",
    status_code=status.HTTP_201_CREATED,
    summary="Correct an assistant reply and/or its intent",
    responses={409: {"model": ErrorBody, "description": "Not an assistant reply."}},
)
def correct_reply(
    message_id: uuid.UUID, body: CorrectReply, operator: CurrentOperator, session: DbSession
) -> CorrectionOut:
    message = ConversationRepository(session).get_message(message_id)
    correction = CorrectionRepository(session).add(
        message,
        operator_id=operator.id,
        corrected_text=body.corrected_text,
        corrected_intent=body.corrected_intent,
        exclude_from_training=body.exclude_from_training,
        note=body.note,
    )
    AuditRepository(session).by_operator(
        operator.id,
        "message.correct",
        "message",
        str(message.id),
        {
            "correction_id": str(correction.id),
            "conversation_id": str(message.conversation_id),
            "corrected_text": correction.corrected_text is not None,
            "corrected_intent": correction.corrected_intent,
            "previous_intent": message.intent,
            "exclude_from_training": correction.exclude_from_training,
        },
    )
    return CorrectionOut.model_validate(correction)


@router.post(
    "/messages/{message_id}/intent",
    status_code=status.HTTP_201_CREATED,
    summary="Label the intent of a message (confirms or corrects the predicted one)",
)
def label_intent(
    message_id: uuid.UUID, body: LabelIntent, operator: CurrentOperator, session: DbSession
) -> CorrectionOut:
    message = ConversationRepository(session).get_message(message_id)
    correction = CorrectionRepository(session).add(
        message, operator_id=operator.id, corrected_intent=body.intent, note=body.note
    )
    AuditRepository(session).by_operator(
        operator.id,
        "message.label_intent",
        "message",
        str(message.id),
        {
            "correction_id": str(correction.id),
            "conversation_id": str(message.conversation_id),
            "intent": body.intent,
            "previous_intent": message.intent,
        },
    )
    return CorrectionOut.model_validate(correction)
