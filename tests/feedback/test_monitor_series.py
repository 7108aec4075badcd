"""The monitor's series (one grouped query per figure family, every bucket at once) gives, on
PostgreSQL and SQLite, exactly the figures of one query set per window (the oracle in
`monitor_reference`): counts, thumbs, CSAT, handoffs, newest-label-wins intent accuracy, the
serving guard's fallbacks, the latency percentiles and the wait for a first agent reply,
overall and per model version."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.orm import Session

from feedback import migrate
from feedback.db import make_engine, make_session_factory
from feedback.models import Message, MessageRole
from feedback.monitor import window_metrics, window_series
from feedback.repositories.conversations import ConversationRepository
from feedback.repositories.monitor_figures import MonitorFigureRepository, TimeBuckets
from feedback.repositories.ratings import CorrectionRepository, RatingRepository
from feedback.settings import Settings
from tests.feedback.monitor_reference import reference_window_metrics

START = dt.datetime(2005, 7, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=7)
VERSIONS = ["mv-a", "mv-b", None]
INTENTS = ["delivery", "refund", "billing"]


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    """A session on the test's PostgreSQL transaction, or on a migrated SQLite file."""
    if request.param == "postgresql":
        yield request.getfixturevalue("db")
        return
    engine = make_engine(
        Settings(data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'store.db'}"})
    )
    migrate.upgrade(engine)
    session = make_session_factory(engine)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        engine.dispose()


def _times(rng: random.Random, bounds: list[dt.datetime]) -> dt.datetime:
    """Anywhere around the range, often exactly on a bound or a microsecond before one."""
    pick = rng.random()
    if pick < 0.2:
        return rng.choice(bounds)
    if pick < 0.3:
        return rng.choice(bounds) - dt.timedelta(microseconds=1)
    span = (END - START) + dt.timedelta(hours=2)
    return START - dt.timedelta(hours=1) + span * rng.random()


def _fill(session: Session, seed: int = 7) -> None:
    """Conversations, replies, ratings and labels spread over the buckets (and outside)."""
    rng = random.Random(seed)
    # The bounds of 7 and of 5 buckets, and others.
    bounds = [
        START + dt.timedelta(minutes=minutes * k) for minutes in (60, 84, 50) for k in range(9)
    ]
    conversations = ConversationRepository(session)
    ratings = RatingRepository(session)
    corrections = CorrectionRepository(session)
    for _ in range(40):
        conversation = conversations.create()
        conversation.created_at = _times(rng, bounds)
        messages: list[Message] = []
        for _ in range(rng.randint(1, 6)):
            customer = rng.random() < 0.4
            message = conversations.add_message(
                conversation,
                role=MessageRole.CUSTOMER if customer else MessageRole.ASSISTANT,
                text="hello",
                intent=rng.choice([*INTENTS, None]),
                model_version=None if customer else rng.choice(VERSIONS),
                latency_ms=None if customer or rng.random() < 0.2 else rng.uniform(5, 900),
            )
            message.created_at = _times(rng, bounds)
            if not customer:
                message.reply_source = rng.choice(["generated", "approved", "handoff", None])
                message.guard_reason = rng.choice([None, None, "degenerate", "low_reward"])
            messages.append(message)
        session.flush()
        for message in messages:
            if message.role == "assistant" and rng.random() < 0.6:
                rating = ratings.rate_message(
                    message, thumbs=rng.choice([1, -1, None]) or 1, csat=rng.choice([None, 2, 5])
                )
                rating.updated_at = _times(rng, bounds)
            for _ in range(rng.choice([0, 0, 1, 2, 3])):
                label = corrections.add(
                    message,
                    operator_id=None,
                    corrected_intent=rng.choice([*INTENTS, None]),
                    corrected_text=rng.choice([None, "better"])
                    if message.role == "assistant"
                    else None,
                    exclude_from_training=True,
                )
                label.created_at = _times(rng, bounds)
        pick = rng.random()
        if pick < 0.2:
            conversation.handed_off = True  # a human has it now (below 0.1: no time stored)
        if 0.1 <= pick < 0.5:  # handed off at some time; an agent answered most, some before
            # (an earlier case: left out of the wait) or not yet
            conversation.handed_off_at = _times(rng, bounds)
            answered = rng.random()
            if answered < 0.7:
                wait = dt.timedelta(seconds=rng.uniform(1, 7200))
                conversation.first_agent_reply_at = conversation.handed_off_at + wait
            elif answered < 0.85:
                conversation.first_agent_reply_at = conversation.handed_off_at - dt.timedelta(
                    minutes=5
                )
        if rng.random() < 0.3:
            rating = ratings.rate_conversation(conversation, csat=rng.randint(1, 5))
            rating.updated_at = _times(rng, bounds)
        session.flush()


@pytest.mark.parametrize("buckets", [1, 5, 7, 96])
def test_the_series_matches_one_query_set_per_window(store: Session, buckets: int) -> None:
    _fill(store)
    step = dt.timedelta(seconds=-(-int((END - START).total_seconds()) // buckets))
    windows = TimeBuckets.even(START, END, step)
    for version in ["mv-a", "mv-b", "mv-unknown", None]:
        series = window_series(store, windows, model_version=version)
        expected = [
            reference_window_metrics(store, since=lo, until=hi, model_version=version)
            for lo, hi in windows.windows()
        ]
        assert [m.model_dump() for m in series] == [m.model_dump() for m in expected]
    # The data reaches every figure (a comparison of empty windows would prove nothing).
    whole = reference_window_metrics(store, since=START, until=END)
    assert whole.thumbs_up and whole.thumbs_down and whole.csat_count and whole.handed_off
    assert whole.verified_intents and whole.intent_accuracy not in (None, 0.0, 1.0)
    assert whole.guarded_replies and whole.approved_replies and whole.latency_p95_ms
    assert whole.first_agent_replies and whole.first_agent_reply_p95_s
    assert whole.first_agent_reply_p50_s is not None
    assert whole.first_agent_reply_p50_s < whole.first_agent_reply_p95_s <= 7200


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (None, None),
        (START + dt.timedelta(hours=2), None),
        (None, START + dt.timedelta(hours=3)),
        (END, START),  # inverted: holds nothing
    ],
)
def test_one_window_matches_with_open_sides(
    store: Session, since: dt.datetime | None, until: dt.datetime | None
) -> None:
    _fill(store, seed=11)
    for version in ["mv-b", None]:
        ours = window_metrics(store, since=since, until=until, model_version=version)
        theirs = reference_window_metrics(store, since=since, until=until, model_version=version)
        assert ours.model_dump() == theirs.model_dump()


def test_the_query_count_does_not_grow_with_the_buckets(
    db: Session, connection: Connection
) -> None:
    _fill(db)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    counts = {}
    event.listen(connection, "before_cursor_execute", record)
    try:
        for buckets in (1, 96):
            statements.clear()
            step = (END - START) / buckets
            MonitorFigureRepository(db).counts(TimeBuckets.even(START, END, step))
            counts[buckets] = len(statements)
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert counts == {1: 7, 96: 7}  # one grouped query per figure family


@pytest.mark.parametrize(
    "bounds",
    [
        (START,),
        (START, None, END),
        (START, END, END + dt.timedelta(hours=1), END),
    ],
)
def test_time_buckets_refuse_bounds_that_would_misplace_rows(
    bounds: tuple[dt.datetime | None, ...],
) -> None:
    with pytest.raises(ValueError):
        TimeBuckets(bounds)


def test_even_buckets_cut_the_last_one_at_the_end() -> None:
    buckets = TimeBuckets.even(START, START + dt.timedelta(minutes=25), dt.timedelta(minutes=10))
    assert [(lo, hi) for lo, hi in buckets.windows()] == [
        (START, START + dt.timedelta(minutes=10)),
        (START + dt.timedelta(minutes=10), START + dt.timedelta(minutes=20)),
        (START + dt.timedelta(minutes=20), START + dt.timedelta(minutes=25)),
    ]
