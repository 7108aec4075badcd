"""Approved answers per intent: read by the serving guard, set by operators, seeded by runs.

Texts are PII-redacted on the way in, like every text the store keeps: an approved answer is
sent to many customers, so a phone number typed into it must not travel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.errors import InvalidInput, NotFound
from feedback.models import AnswerSource, ApprovedAnswer
from feedback.redaction import redact_text

MAX_CHARS = 2000


class ApprovedAnswerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, intent: str) -> ApprovedAnswer | None:
        return self.session.scalar(select(ApprovedAnswer).where(ApprovedAnswer.intent == intent))

    def text_for(self, intent: str) -> str | None:
        found = self.get(intent)
        return found.text if found is not None else None

    def all(self) -> Sequence[ApprovedAnswer]:
        return self.session.scalars(select(ApprovedAnswer).order_by(ApprovedAnswer.intent)).all()

    def set(
        self,
        intent: str,
        text: str,
        *,
        operator_id: uuid.UUID | None,
        message_id: uuid.UUID | None = None,
    ) -> ApprovedAnswer:
        """An operator's answer for `intent` (replaces any earlier one, seeded or not)."""
        clean = _checked(intent, text)
        answer = self.get(intent)
        if answer is None:
            answer = ApprovedAnswer(intent=intent)
            self.session.add(answer)
        answer.text = clean
        answer.source = AnswerSource.OPERATOR.value
        answer.operator_id = operator_id
        answer.message_id = message_id
        answer.model_version = None
        self.session.flush()
        return answer

    def seed(self, answers: Mapping[str, str], *, model_version: str) -> list[str]:
        """Seeded answers for intents that have none (operators' answers are never touched)
        -> the intents seeded."""
        existing = set(
            self.session.scalars(
                select(ApprovedAnswer.intent).where(ApprovedAnswer.intent.in_(list(answers)))
            )
        )
        seeded = []
        for intent, text in sorted(answers.items()):
            if intent in existing or not text.strip():
                continue
            self.session.add(
                ApprovedAnswer(
                    intent=intent,
                    text=_checked(intent, text),
                    source=AnswerSource.SEED.value,
                    model_version=model_version,
                )
            )
            seeded.append(intent)
        self.session.flush()
        return seeded

    def delete(self, intent: str) -> None:
        answer = self.get(intent)
        if answer is None:
            raise NotFound(f"intent {intent!r} has no approved answer")
        self.session.delete(answer)
        self.session.flush()


def _checked(intent: str, text: str) -> str:
    if not intent.strip() or len(intent) > 120:
        raise InvalidInput("an intent name is 1 to 120 characters")
    clean = redact_text(text).strip()
    if not clean:
        raise InvalidInput("an approved answer needs some text")
    if len(clean) > MAX_CHARS:
        raise InvalidInput(f"an approved answer has at most {MAX_CHARS} characters")
    return clean
