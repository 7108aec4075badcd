"""The monitor's figures as SQL: counts, CSAT, verified intents and latencies of contiguous time
buckets, for every bucket at once.

One grouped query per figure family, whatever the number of buckets (a chart of 96 buckets costs
what one window costs):

    conversations       conversations, handed off (ever)     by the conversation's start
    customer messages   customer messages                    by the message's time
    replies             replies, thumbs up/down, guarded,    by the reply's time
                        approved answers
    CSAT                ratings with a CSAT, their mean      by the rating's last update
    verified intents    messages with a predicted intent     by the message's time
                        and an operator label, correct ones
    latencies           the reply latencies themselves       by the reply's time
    first agent replies the wait from handoff to the first   by that reply's time
                        agent reply (`handoff_figures`)

Each row's bucket is computed in SQL from its timestamp (`time_buckets.TimeBuckets.index`).

`feedback.monitor` turns these counts into rates and percentiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from feedback.models import Conversation, Correction, Message, MessageRole, Rating
from feedback.repositories.handoff_figures import first_agent_reply_waits
from feedback.repositories.time_buckets import TimeBuckets as TimeBuckets

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")

# Latencies kept per bucket for its percentiles (the newest); bounded so a busy store stays cheap.
MAX_LATENCY_SAMPLES = 20_000


@dataclass
class BucketCounts:
    """The raw figures of one bucket; ratios and percentiles are `feedback.monitor`'s."""

    conversations: int = 0
    handed_off: int = 0
    customer_messages: int = 0
    assistant_replies: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    guarded_replies: int = 0
    approved_replies: int = 0
    csat_count: int = 0
    csat_mean: float | None = None
    verified_intents: int = 0
    correct_intents: int = 0
    latencies: list[float] = field(default_factory=list)  # ascending
    first_agent_waits: list[float] = field(default_factory=list)  # seconds, ascending


class MonitorFigureRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def counts(
        self, buckets: TimeBuckets, *, model_version: str | None = None
    ) -> list[BucketCounts]:
        """Every bucket's figures (one `BucketCounts` per bucket, in order), over all replies or
        those of one model version (and the conversations it took part in)."""
        out = [BucketCounts() for _ in range(buckets.count)]
        self._conversations(out, buckets, model_version)
        self._customer_messages(out, buckets, model_version)
        self._replies(out, buckets, model_version)
        self._csat(out, buckets, model_version)
        self._verified_intents(out, buckets, model_version)
        self._latencies(out, buckets, model_version)
        waits = first_agent_reply_waits(self.session, buckets, model_version)
        for counts, bucket_waits in zip(out, waits, strict=True):
            counts.first_agent_waits = bucket_waits
        return out

    def _grouped(self, inner: Select[*tuple[Any, ...]], *aggregates: Any) -> Sequence[Any]:
        """Rows of (bucket, *aggregates) of a subquery that has a `bucket` column."""
        rows = inner.subquery()
        stmt = select(rows.c.bucket, *(a(rows) for a in aggregates)).group_by(rows.c.bucket)
        return self.session.execute(stmt).all()

    def _conversations(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        # Handed off at any time: `handed_off` is only True while a human has the conversation.
        inner = buckets.within(
            select(
                buckets.index(Conversation.created_at).label("bucket"),
                Conversation.handed_off,
                Conversation.handed_off_at,
            ),
            Conversation.created_at,
        )
        if model_version is not None:
            inner = inner.where(Conversation.id.in_(_served(model_version)))
        for bucket, total, handed_off in self._grouped(
            inner,
            lambda r: func.count(),
            lambda r: func.count().filter(
                or_(r.c.handed_off.is_(True), r.c.handed_off_at.is_not(None))
            ),
        ):
            out[bucket].conversations = int(total)
            out[bucket].handed_off = int(handed_off)

    def _customer_messages(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        inner = buckets.within(
            select(buckets.index(Message.created_at).label("bucket")).where(
                Message.role == MessageRole.CUSTOMER.value
            ),
            Message.created_at,
        )
        if model_version is not None:
            inner = inner.where(Message.conversation_id.in_(_served(model_version)))
        for bucket, total in self._grouped(inner, lambda r: func.count()):
            out[bucket].customer_messages = int(total)

    def _replies(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        # A reply has at most one rating (unique index `uq_ratings_message_id`): the outer join
        # never repeats a reply.
        inner = _replies_in(
            select(
                buckets.index(Message.created_at).label("bucket"),
                Message.guard_reason,
                Message.reply_source,
                Rating.thumbs,
            ).outerjoin(Rating, Rating.message_id == Message.id),
            buckets,
            model_version,
        )
        for bucket, total, up, down, guarded, approved in self._grouped(
            inner,
            lambda r: func.count(),
            lambda r: func.count().filter(r.c.thumbs == 1),
            lambda r: func.count().filter(r.c.thumbs == -1),
            lambda r: func.count(r.c.guard_reason),
            lambda r: func.count().filter(r.c.reply_source == "approved"),
        ):
            counts = out[bucket]
            counts.assistant_replies = int(total)
            counts.thumbs_up, counts.thumbs_down = int(up), int(down)
            counts.guarded_replies, counts.approved_replies = int(guarded), int(approved)

    def _csat(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        inner = buckets.within(
            select(buckets.index(Rating.updated_at).label("bucket"), Rating.csat).where(
                Rating.csat.is_not(None)
            ),
            Rating.updated_at,
        )
        if model_version is not None:
            inner = inner.where(Rating.conversation_id.in_(_served(model_version)))
        for bucket, total, mean in self._grouped(
            inner, lambda r: func.count(r.c.csat), lambda r: func.avg(r.c.csat)
        ):
            out[bucket].csat_count = int(total or 0)
            out[bucket].csat_mean = float(mean) if mean is not None else None

    def _verified_intents(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        """Operator-verified intents: the newest labelling correction of each message that has a
        predicted intent, compared with the prediction."""
        later = aliased(Correction)
        newest_label = (
            select(Correction.message_id, Correction.corrected_intent)
            .where(Correction.corrected_intent.is_not(None))
            .where(
                ~select(later.id)
                .where(
                    and_(
                        later.message_id == Correction.message_id,
                        later.corrected_intent.is_not(None),
                        later.created_at > Correction.created_at,
                    )
                )
                .exists()
            )
            .subquery()
        )
        inner = buckets.within(
            select(
                buckets.index(Message.created_at).label("bucket"),
                Message.intent,
                newest_label.c.corrected_intent,
            )
            .join(newest_label, newest_label.c.message_id == Message.id)
            .where(Message.intent.is_not(None)),
            Message.created_at,
        )
        if model_version is not None:
            inner = inner.where(Message.model_version == model_version)
        for bucket, total, correct in self._grouped(
            inner,
            lambda r: func.count(),
            lambda r: func.count().filter(r.c.intent == r.c.corrected_intent),
        ):
            out[bucket].verified_intents = int(total)
            out[bucket].correct_intents = int(correct)

    def _latencies(
        self, out: list[BucketCounts], buckets: TimeBuckets, model_version: str | None
    ) -> None:
        """(bucket, latency) pairs: the newest `MAX_LATENCY_SAMPLES` of each bucket."""
        bucket = buckets.index(Message.created_at)
        newest_first = func.row_number().over(
            partition_by=bucket, order_by=Message.created_at.desc()
        )
        inner = _replies_in(
            select(bucket.label("bucket"), Message.latency_ms, newest_first.label("rank")).where(
                Message.latency_ms.is_not(None)
            ),
            buckets,
            model_version,
        ).subquery()
        rows = self.session.execute(
            select(inner.c.bucket, inner.c.latency_ms).where(inner.c.rank <= MAX_LATENCY_SAMPLES)
        )
        for index, latency in rows:
            if latency is not None:
                out[index].latencies.append(float(latency))
        for counts in out:
            counts.latencies.sort()


def _replies_in(stmt: _S, buckets: TimeBuckets, model_version: str | None) -> _S:
    """Assistant replies in the range, of one model version or all."""
    stmt = buckets.within(
        stmt.where(Message.role == MessageRole.ASSISTANT.value), Message.created_at
    )
    if model_version is not None:
        stmt = stmt.where(Message.model_version == model_version)
    return stmt


def _served(model_version: str) -> Select[Any]:
    """Conversations the model version wrote in."""
    return select(Message.conversation_id).where(Message.model_version == model_version)
