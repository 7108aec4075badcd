"""The canary check on real PostgreSQL: wait for a sample, roll back a worse canary (thumbs,
verified intents, latency), promote one that held up, drop a stale decision; every move is an
alias event with an audit row carrying the numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.loop.context import LoopContext
from distill_worker.loop.dispatch import monitor_tick
from feedback.aliases import Move, apply_canary_decision
from feedback.canary import CanaryDecision, check_canary
from feedback.models import MessageRole
from feedback.repositories.audit import AuditRepository
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from feedback.settings import Settings
from tests.fixtures.operators import make_conversation

CHAMPION, CANDIDATE = "mv-champ", "mv-canary"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        canary={"min_sample": 10, "margin": 0.1, "promote_after": 30, "max_latency_ratio": 2.0},
    )


@pytest.fixture
def canary_running(db: Session) -> ModelVersionRepository:
    repo = ModelVersionRepository(db)
    for version in (CHAMPION, CANDIDATE):
        repo.register(version_id=version, bundle_uri=f"/bundles/{version}", checksum="0" * 64)
    repo.set_alias(PRODUCTION, CHAMPION, reason="first")
    repo.set_alias(CANARY, CANDIDATE, reason="try the candidate")
    return repo


def replies(
    db: Session,
    version: str,
    *,
    up: int,
    down: int,
    latency_ms: float = 40.0,
    labelled_right: int = 0,
    labelled_wrong: int = 0,
) -> None:
    """Rated replies of `version` (one conversation each), some with an operator's label."""
    conversations = ConversationRepository(db)
    for i in range(up + down):
        conversation = make_conversation(db)
        conversations.add_message(conversation, role=MessageRole.CUSTOMER, text="hi")
        reply = conversations.add_message(
            conversation, role=MessageRole.ASSISTANT, text="hello", intent="greet",
            model_version=version, latency_ms=latency_ms,
        )  # fmt: skip
        RatingRepository(db).rate_message(reply, thumbs=1 if i < up else -1)
        if i < labelled_right + labelled_wrong:
            label = "greet" if i < labelled_right else "goodbye"
            CorrectionRepository(db).add(reply, operator_id=None, corrected_intent=label)
    db.flush()


def test_no_canary_without_the_alias_or_when_it_is_the_champion(
    db: Session, settings: Settings
) -> None:
    assert check_canary(db, settings).action == "none"
    repo = ModelVersionRepository(db)
    repo.register(version_id=CHAMPION, bundle_uri="/b", checksum="0" * 64)
    repo.set_alias(PRODUCTION, CHAMPION)
    repo.set_alias(CANARY, CHAMPION)
    decision = check_canary(db, settings)
    assert decision.action == "none"
    assert apply_canary_decision(db, decision) is None


def test_waits_for_the_minimum_sample(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=20, down=0)
    replies(db, CANDIDATE, up=0, down=9)  # dreadful, but 9 < min_sample
    decision = check_canary(db, settings)
    assert decision.action == "wait"
    assert decision.numbers["canary"]["thumbs_down"] == 9


def test_a_worse_canary_is_rolled_back_and_audited(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=18, down=2)  # 0.90
    replies(db, CANDIDATE, up=7, down=5)  # 0.58 < 0.90 - 0.1
    decision = check_canary(db, settings)
    assert decision.action == "rollback"
    assert "positive_rate 0.583 < champion 0.900" in decision.reason
    assert decision.numbers["judged"] == ["positive_rate", "latency_p95_ms"]
    assert _moved(apply_canary_decision(db, decision)) == CANARY
    assert canary_running.resolve_alias(CANARY).id == CHAMPION  # type: ignore[union-attr]
    assert canary_running.resolve_alias(PRODUCTION).id == CHAMPION  # type: ignore[union-attr]
    event = canary_running.alias_history(CANARY)[0]
    assert (event.model_version_id, event.previous_version_id) == (CHAMPION, CANDIDATE)
    assert event.reason is not None and event.reason.startswith(f"canary {CANDIDATE} rolled back")
    (entry,) = AuditRepository(db).recent(action="model.canary_rollback")
    assert entry.actor_type == "system" and entry.target_id == CANDIDATE
    assert entry.details["numbers"]["canary"]["thumbs_up"] == 7
    assert entry.details["numbers"]["champion"]["positive_rate"] == 0.9
    assert check_canary(db, settings).action == "none"


def test_a_canary_slower_than_allowed_is_rolled_back(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=12, down=0, latency_ms=50.0)
    replies(db, CANDIDATE, up=12, down=0, latency_ms=120.0)  # > 50 x 2.0
    decision = check_canary(db, settings)
    assert decision.action == "rollback"
    assert "p95 latency 120 ms > champion 50 ms" in decision.reason


def test_worse_verified_intents_roll_back_even_with_good_thumbs(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=12, down=0, labelled_right=12)
    replies(db, CANDIDATE, up=12, down=0, labelled_right=6, labelled_wrong=6)
    decision = check_canary(db, settings)
    assert decision.action == "rollback"
    assert "intent_accuracy 0.500 < champion 1.000" in decision.reason


def test_a_canary_that_held_up_is_kept_then_promoted(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=17, down=3)  # 0.85
    replies(db, CANDIDATE, up=16, down=4)  # 0.80: within the margin
    assert check_canary(db, settings).action == "keep"
    replies(db, CANDIDATE, up=10, down=0)  # 30 rated replies: promote_after
    decision = check_canary(db, settings)
    assert decision.action == "promote", decision.reason
    assert _moved(apply_canary_decision(db, decision)) == PRODUCTION
    assert canary_running.resolve_alias(PRODUCTION).id == CANDIDATE  # type: ignore[union-attr]
    assert canary_running.alias_history(PRODUCTION)[0].previous_version_id == CHAMPION
    assert [e.action for e in AuditRepository(db).recent(action="model.canary_promote")] == [
        "model.canary_promote"
    ]
    assert check_canary(db, settings).action == "none"  # canary == production now


def test_auto_promote_off_only_keeps(
    db: Session, tmp_path: Path, canary_running: ModelVersionRepository
) -> None:
    settings = Settings(data_dir=tmp_path, canary={"min_sample": 5, "auto_promote": False})
    replies(db, CHAMPION, up=10, down=0)
    replies(db, CANDIDATE, up=300, down=0)
    assert check_canary(db, settings).action == "keep"


def test_a_stale_decision_moves_nothing(
    db: Session, settings: Settings, canary_running: ModelVersionRepository
) -> None:
    replies(db, CHAMPION, up=20, down=0)
    replies(db, CANDIDATE, up=5, down=10)
    decision = check_canary(db, settings)
    assert decision.action == "rollback"
    canary_running.register(version_id="mv-other", bundle_uri="/o", checksum="0" * 64)
    canary_running.set_alias(CANARY, "mv-other", reason="an admin started another canary")
    assert apply_canary_decision(db, decision) is None
    assert canary_running.resolve_alias(CANARY).id == "mv-other"  # type: ignore[union-attr]


def test_only_moves_apply() -> None:
    assert CanaryDecision("keep", "fine", CANDIDATE, CHAMPION).moves_an_alias is False
    assert CanaryDecision("rollback", "worse", CANDIDATE, CHAMPION).moves_an_alias is True


def test_the_workers_monitor_tick_rolls_a_worse_canary_back(
    db: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    canary_running: ModelVersionRepository,
) -> None:
    """The canary check runs in the worker's monitor tick (no Redis here: the API processes
    follow through their alias polling)."""
    replies(db, CHAMPION, up=18, down=2)
    replies(db, CANDIDATE, up=7, down=5)
    db.commit()
    ctx = LoopContext(settings, _factory=session_factory, _pid=os.getpid())
    sent: list[object] = []
    summary = monitor_tick(ctx, lambda run_id: sent.append(run_id) or "task")
    assert summary["canary"]["action"] == "rollback" and summary["canary"]["moved"] == CANARY
    assert canary_running.resolve_alias(CANARY).id == CHAMPION  # type: ignore[union-attr]
    assert monitor_tick(ctx, lambda run_id: "task")["canary"]["action"] == "none"


def _moved(move: Move | None) -> str | None:
    """The alias a move moved (None: nothing moved)."""
    return move.alias if move is not None else None
