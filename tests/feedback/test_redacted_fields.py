"""Every free-text field a customer or operator can set is PII-redacted before it is stored: a
conversation is written through the repositories with PII in each such field, and the raw rows
are read back with SQL."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from feedback import handoff
from feedback.models import MessageRole
from feedback.repositories.approved_answers import ApprovedAnswerRepository
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.model_versions import ModelVersionRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from feedback.repositories.runs import RunRepository

# One of each kind, written the ways the probe found stored unredacted.
PHONE = "\u0660\u0663\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"  # 03012345678
EMAIL = "jane.doe (at) example (dot) com"
CARD = "4111\u00a01111\u00a01111\u00a01111"
IBAN = "DE89-3704-0044-0532-0130-00"
PII_TEXT = f"call {PHONE} or mail {EMAIL}, card {CARD}, IBAN {IBAN}"
REDACTED_TEXT = "call [PHONE] or mail [EMAIL], card [CARD], IBAN [IBAN]"

# (table, column, JSON key or None): every stored field that a person types.
FIELDS: list[tuple[str, str, str | None]] = [
    ("conversations", "site", None),
    ("conversations", "locale", None),
    ("conversations", "handoff_reason", None),
    ("conversation_state_changes", "reason", None),
    ("messages", "text", None),
    ("ratings", "comment", None),
    ("corrections", "corrected_text", None),
    ("corrections", "corrected_intent", None),
    ("corrections", "note", None),
    ("approved_answers", "text", None),
    ("model_versions", "notes", None),
    ("model_alias_events", "reason", None),
    ("audit_log", "details", "reason"),
    ("distill_runs", "trigger_detail", "reason"),
]


def _store_everything(db: Session) -> None:
    conversations = ConversationRepository(db)
    conversation = conversations.create(site=PII_TEXT, locale=PII_TEXT)
    conversations.add_message(conversation, role=MessageRole.CUSTOMER, text=PII_TEXT)
    reply = conversations.add_message(conversation, role=MessageRole.ASSISTANT, text=PII_TEXT)
    handoff.request_human(db, conversation.id, reason=PII_TEXT)
    ratings = RatingRepository(db)
    ratings.rate_message(reply, thumbs=-1, comment=PII_TEXT)
    ratings.rate_conversation(conversation, csat=2, comment=PII_TEXT)
    CorrectionRepository(db).add(
        reply, operator_id=None, corrected_text=PII_TEXT, corrected_intent=PII_TEXT, note=PII_TEXT
    )
    ApprovedAnswerRepository(db).set("billing", PII_TEXT, operator_id=None)
    versions = ModelVersionRepository(db)
    versions.register(
        version_id="v-redaction", bundle_uri="file:///b", checksum="x", notes=PII_TEXT
    )
    versions.set_alias("production", "v-redaction", reason=PII_TEXT)
    AuditRepository(db).by_operator(
        uuid.uuid4(), "model.promote", "model_version", "v-redaction", {"reason": PII_TEXT}
    )
    RunRepository(db).open_run("manual", {"reason": PII_TEXT, "kind": "full"}, {})
    db.flush()


def _raw_values(db: Session, table: str, column: str) -> list[Any]:
    if table == "messages":  # the system's own notices (the handoff's) are not typed by anyone
        query = f"SELECT {column} FROM {table} WHERE role <> 'system'"
    else:
        query = f"SELECT {column} FROM {table}"
    return list(db.execute(text(query)).scalars())


def _pii_digits() -> list[str]:
    return [
        "".join(str(unicodedata.digit(ch)) for ch in pii if unicodedata.digit(ch, None) is not None)
        for pii in (PHONE, CARD, IBAN)
    ]


def _assert_no_pii(value: str, where: str) -> None:
    folded = re.sub(r"\D", "", "".join(str(unicodedata.digit(ch, ch)) for ch in value))
    for digits in _pii_digits():
        runs = {digits[i : i + 6] for i in range(len(digits) - 5)}
        assert not any(run in folded for run in runs), (where, value)
    assert "jane" not in value.lower(), (where, value)


def _is_uuid(value: str) -> bool:
    """Ids stored as text (an audit actor) have hex digits that may match by chance."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def test_every_free_text_field_is_stored_redacted(db: Session) -> None:
    _store_everything(db)
    for table, column, key in FIELDS:
        values = _raw_values(db, table, column)
        assert values, f"nothing stored in {table}.{column}"
        for value in values:
            stored = value[key] if key is not None else value
            assert isinstance(stored, str), (table, column, stored)
            # The longer columns keep the whole sentence; locale (35 characters) keeps its start.
            assert REDACTED_TEXT.startswith(stored) and stored.startswith("call [PHONE]"), (
                table,
                column,
                stored,
            )
            _assert_no_pii(stored, f"{table}.{column}")


def test_no_column_of_the_written_rows_holds_pii(db: Session) -> None:
    _store_everything(db)
    for table in sorted({table for table, _, _ in FIELDS}):
        for row in db.execute(text(f"SELECT * FROM {table}")).mappings():
            for column, value in row.items():
                if isinstance(value, dict | list):
                    value = json.dumps(value, ensure_ascii=False)
                if isinstance(value, str) and not _is_uuid(value):
                    _assert_no_pii(value, f"{table}.{column}")


def test_labels_without_pii_are_stored_as_typed(db: Session) -> None:
    conversations = ConversationRepository(db)
    conversation = conversations.create(site="shop.example.com/help", locale="de-DE")
    reply = conversations.add_message(conversation, role=MessageRole.ASSISTANT, text="Hi")
    handoff.request_human(db, conversation.id, reason="customer_request")
    correction = CorrectionRepository(db).add(
        reply, operator_id=None, corrected_intent="billing_refund_2024"
    )
    row = db.execute(
        text("SELECT site, locale, handoff_reason FROM conversations WHERE id = :id"),
        {"id": conversation.id},
    ).one()
    assert tuple(row) == ("shop.example.com/help", "de-DE", "customer_request")
    assert correction.corrected_intent == "billing_refund_2024"
