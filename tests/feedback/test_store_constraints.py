"""Database-level guarantees on real PostgreSQL: the constraints hold even if code forgets."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedback.errors import Conflict, InvalidInput
from feedback.models import DistillRun, MessageRole, RunStatus, RunTrigger
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.model_versions import ModelVersionRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository


def test_only_one_active_run(db: Session) -> None:
    run = DistillRun(trigger=RunTrigger.MANUAL.value)
    db.add(run)
    db.flush()
    assert run.status == "queued" and run.active_slot == 1
    run.status = RunStatus.FAILED.value
    db.flush()
    assert run.active_slot is None
    db.add(DistillRun(trigger=RunTrigger.MANUAL.value, status=RunStatus.RUNNING.value))
    db.flush()
    db.add(DistillRun(trigger=RunTrigger.ACCURACY.value, status=RunStatus.QUEUED.value))
    with pytest.raises(IntegrityError), db.begin_nested():
        db.flush()


def test_finished_runs_do_not_block(db: Session) -> None:
    finished = [
        DistillRun(trigger=RunTrigger.SCHEDULE.value, status=RunStatus.SUCCEEDED.value)
        for _ in range(3)
    ]
    running = DistillRun(trigger=RunTrigger.MANUAL.value, status=RunStatus.RUNNING.value)
    db.add_all([*finished, running])
    db.flush()
    assert [run.active_slot for run in finished] == [None, None, None]
    assert running.active_slot == 1 and running.id is not None


def test_message_text_is_redacted_by_the_repository(db: Session) -> None:
    repo = ConversationRepository(db)
    conversation = repo.create()
    message = repo.add_message(
        conversation, role=MessageRole.CUSTOMER, text="IBAN DE89 3704 0044 0532 0130 00 please"
    )
    assert "3704" not in message.text and "[IBAN]" in message.text
    assert conversation.message_count == 1


def test_closed_conversation_refuses_messages(db: Session) -> None:
    repo = ConversationRepository(db)
    conversation = repo.create()
    repo.close(conversation)
    with pytest.raises(Conflict):
        repo.add_message(conversation, role=MessageRole.CUSTOMER, text="hello?")


def test_rating_values_are_checked(db: Session) -> None:
    repo = ConversationRepository(db)
    conversation = repo.create()
    reply = repo.add_message(conversation, role=MessageRole.ASSISTANT, text="Hi")
    ratings = RatingRepository(db)
    with pytest.raises(InvalidInput):
        ratings.rate_message(reply, thumbs=2)
    with pytest.raises(InvalidInput):
        ratings.rate_message(reply, thumbs=None, csat=None)
    with pytest.raises(InvalidInput):
        ratings.rate_conversation(conversation, csat=0)


def test_correction_needs_a_change(db: Session) -> None:
    repo = ConversationRepository(db)
    conversation = repo.create()
    reply = repo.add_message(conversation, role=MessageRole.ASSISTANT, text="Hi")
    with pytest.raises(InvalidInput):
        CorrectionRepository(db).add(reply, operator_id=None)
    correction = CorrectionRepository(db).add(
        reply, operator_id=None, corrected_text="Hello, write to me at x@y.org"
    )
    assert correction.corrected_text == "Hello, write to me at [EMAIL]"


def test_model_versions_are_immutable_and_aliases_keep_history(db: Session) -> None:
    repo = ModelVersionRepository(db)
    repo.register(version_id="v1", bundle_uri="/b/v1", checksum="a" * 64)
    repo.register(version_id="v2", bundle_uri="/b/v2", checksum="b" * 64)
    assert repo.register(version_id="v1", bundle_uri="/b/v1", checksum="a" * 64).id == "v1"
    with pytest.raises(Conflict):
        repo.register(version_id="v1", bundle_uri="/b/v1", checksum="c" * 64)
    assert repo.set_alias("production", "v1") is None
    assert repo.set_alias("production", "v2", reason="better") == "v1"
    resolved = repo.resolve_alias("production")
    assert resolved is not None and resolved.id == "v2"
    history = repo.alias_history("production")
    assert [(e.model_version_id, e.previous_version_id) for e in history] == [
        ("v2", "v1"),
        ("v1", None),
    ]
