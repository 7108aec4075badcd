"""The monitor's handoff figures as SQL: how quickly a human answered a conversation the bot
handed over, for every time bucket at once (one grouped query, like the other figure families
of `feedback.repositories.monitor_figures`).

    first agent replies   conversations whose first agent reply    by that reply's time
                          came in the bucket, and the wait
                          (first_agent_reply_at - handed_off_at)

A conversation counts once its first agent reply is stored; one whose handoff is newer than its
first agent reply (handed off again after an earlier case) is left out until a reply answers
the newer handoff. The wait is computed here from the two timestamps, not in SQL, so that
PostgreSQL and SQLite give the same seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback.models import Conversation, Message

if TYPE_CHECKING:
    from feedback.repositories.time_buckets import TimeBuckets


def first_agent_reply_waits(
    session: Session, buckets: TimeBuckets, model_version: str | None
) -> list[list[float]]:
    """Per bucket, the seconds from handoff to the first agent reply, ascending."""
    replied = Conversation.first_agent_reply_at
    stmt = buckets.within(
        select(buckets.index(replied).label("bucket"), Conversation.handed_off_at, replied)
        .where(Conversation.handed_off_at.is_not(None))
        .where(replied >= Conversation.handed_off_at),
        replied,
    )
    if model_version is not None:
        served = select(Message.conversation_id).where(Message.model_version == model_version)
        stmt = stmt.where(Conversation.id.in_(served))
    out: list[list[float]] = [[] for _ in range(buckets.count)]
    for bucket, handed_off_at, replied_at in session.execute(stmt):
        if handed_off_at is not None and replied_at is not None:  # the query's own conditions
            out[bucket].append((replied_at - handed_off_at).total_seconds())
    for waits in out:
        waits.sort()
    return out
