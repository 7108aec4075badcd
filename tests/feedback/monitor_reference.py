"""The monitor's figures of one window as they were computed before the series query: nine
queries per window. Kept as the test oracle that the grouped series (`feedback.monitor
.window_series`) must match figure for figure."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from feedback.models import Conversation, Correction, Message, MessageRole, Rating
from feedback.monitor import WindowMetrics, percentile

MAX_LATENCY_SAMPLES = 20_000


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def reference_window_metrics(
    session: Session,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model_version: str | None = None,
) -> WindowMetrics:
    def in_window(stmt: Select[Any], column: Any) -> Select[Any]:
        if since is not None:
            stmt = stmt.where(column >= since)
        if until is not None:
            stmt = stmt.where(column < until)
        return stmt

    replies = in_window(
        select(Message).where(Message.role == MessageRole.ASSISTANT.value), Message.created_at
    )
    if model_version is not None:
        replies = replies.where(Message.model_version == model_version)
    reply_ids = replies.with_only_columns(Message.id).subquery()

    conv_stmt = in_window(select(func.count(Conversation.id)), Conversation.created_at)
    handed_stmt = conv_stmt.where(
        or_(Conversation.handed_off.is_(True), Conversation.handed_off_at.is_not(None))
    )
    waits_stmt = in_window(
        select(Conversation.handed_off_at, Conversation.first_agent_reply_at).where(
            Conversation.handed_off_at.is_not(None),
            Conversation.first_agent_reply_at >= Conversation.handed_off_at,
        ),
        Conversation.first_agent_reply_at,
    )
    customer_stmt = in_window(
        select(func.count(Message.id)).where(Message.role == MessageRole.CUSTOMER.value),
        Message.created_at,
    )
    if model_version is not None:
        served = select(Message.conversation_id).where(Message.model_version == model_version)
        conv_stmt = conv_stmt.where(Conversation.id.in_(served))
        handed_stmt = handed_stmt.where(Conversation.id.in_(served))
        waits_stmt = waits_stmt.where(Conversation.id.in_(served))
        customer_stmt = customer_stmt.where(Message.conversation_id.in_(served))
    conversations = int(session.scalar(conv_stmt) or 0)
    handed_off = int(session.scalar(handed_stmt) or 0)
    customer_messages = int(session.scalar(customer_stmt) or 0)
    waits = sorted((r - h).total_seconds() for h, r in session.execute(waits_stmt))
    assistant_replies = int(session.scalar(select(func.count()).select_from(reply_ids)) or 0)

    thumbs_rows = session.execute(
        select(Rating.thumbs, func.count())
        .where(Rating.message_id.in_(select(reply_ids.c.id)), Rating.thumbs.is_not(None))
        .group_by(Rating.thumbs)
    ).all()
    thumbs = {int(value): int(count) for value, count in thumbs_rows if value is not None}
    up, down = thumbs.get(1, 0), thumbs.get(-1, 0)

    csat_stmt = in_window(
        select(func.count(Rating.csat), func.avg(Rating.csat)).where(Rating.csat.is_not(None)),
        Rating.updated_at,
    )
    if model_version is not None:
        csat_stmt = csat_stmt.where(
            Rating.conversation_id.in_(
                select(Message.conversation_id).where(Message.model_version == model_version)
            )
        )
    csat_count, csat_mean = session.execute(csat_stmt).one()

    # Operator-verified intents: the newest labelling correction of each message that has a
    # predicted intent, compared with the prediction.
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
    verified_stmt = in_window(
        select(Message.intent, newest_label.c.corrected_intent)
        .join(newest_label, newest_label.c.message_id == Message.id)
        .where(Message.intent.is_not(None)),
        Message.created_at,
    )
    if model_version is not None:
        verified_stmt = verified_stmt.where(Message.model_version == model_version)
    verified = session.execute(verified_stmt).all()
    correct = sum(1 for predicted, label in verified if predicted == label)

    guarded, approved = session.execute(
        select(
            func.count(Message.guard_reason),
            func.count(Message.id).filter(Message.reply_source == "approved"),
        ).where(Message.id.in_(select(reply_ids.c.id)))
    ).one()

    latencies = sorted(
        float(v)
        for v in session.scalars(
            replies.with_only_columns(Message.latency_ms)
            .where(Message.latency_ms.is_not(None))
            .order_by(Message.created_at.desc())
            .limit(MAX_LATENCY_SAMPLES)
        )
        if v is not None
    )
    return WindowMetrics(
        since=since,
        until=until,
        model_version=model_version,
        conversations=conversations,
        customer_messages=customer_messages,
        assistant_replies=assistant_replies,
        thumbs_up=up,
        thumbs_down=down,
        positive_rate=_ratio(up, up + down),
        csat_count=int(csat_count or 0),
        csat_mean=float(csat_mean) if csat_mean is not None else None,
        handed_off=handed_off,
        handoff_rate=_ratio(handed_off, conversations),
        verified_intents=len(verified),
        intent_accuracy=_ratio(correct, len(verified)),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p95_ms=percentile(latencies, 0.95),
        guarded_replies=int(guarded or 0),
        approved_replies=int(approved or 0),
        fallback_rate=_ratio(int(guarded or 0), assistant_replies),
        first_agent_replies=len(waits),
        first_agent_reply_p50_s=percentile(waits, 0.50),
        first_agent_reply_p95_s=percentile(waits, 0.95),
    )
