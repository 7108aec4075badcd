"""The canary check: judge the `canary` alias's live figures against the champion's.

A canary is the `canary` alias pointing at a version other than `production`'s; chat_api serves
it to `canary.share` of conversations (sticky by conversation id). "No canary" is the alias
missing or pointing at the production version, so every decision is an ordinary alias move and
the history stays in `model_alias_events` (`ModelVersionRepository.alias_history("canary")`).

`check_canary` is pure (reads only): both versions are measured over the same window, from the
moment the canary alias last moved to it, with `monitor.window_metrics`. Per figure with at
least `min_sample` observations on both sides:
  positive rate (thumbs) and verified intent accuracy: worse by more than `margin` -> rollback
  p95 latency: above the champion's times `max_latency_ratio` -> rollback
No figure judged yet -> wait. Nothing worse and `promote_after` rated canary replies (with
`auto_promote`) -> promote. Otherwise keep.

This module only decides; `feedback.aliases.apply_canary_decision` carries a decision out (the
alias move and its audit row, in the caller's transaction), and `feedback.aliases.publish`
tells the API processes after the commit (they also poll).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from feedback.loop_settings import CanarySettings
from feedback.monitor import WindowMetrics, window_metrics
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository
from feedback.settings import Settings

Action = Literal["none", "wait", "keep", "rollback", "promote"]


@dataclass(frozen=True)
class CanaryDecision:
    action: Action
    reason: str
    canary_version: str | None = None
    champion_version: str | None = None
    since: dt.datetime | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def moves_an_alias(self) -> bool:
        return self.action in ("rollback", "promote")


def check_canary(
    session: Session, settings: Settings, *, now: dt.datetime | None = None
) -> CanaryDecision:
    """Decide what to do with the running canary (no writes)."""
    repo = ModelVersionRepository(session)
    champion, canary = repo.resolve_alias(PRODUCTION), repo.resolve_alias(CANARY)
    if champion is None or canary is None or canary.id == champion.id:
        return CanaryDecision("none", "no canary is running")
    since = next(
        (e.at for e in repo.alias_history(CANARY) if e.model_version_id == canary.id), None
    )
    until = now or dt.datetime.now(dt.UTC)
    ours = window_metrics(session, since=since, until=until, model_version=canary.id)
    theirs = window_metrics(session, since=since, until=until, model_version=champion.id)
    action, reason, judged = judge(ours, theirs, settings.canary)
    return CanaryDecision(
        action=action,
        reason=reason,
        canary_version=canary.id,
        champion_version=champion.id,
        since=since,
        numbers={
            "judged": judged,
            "canary": ours.model_dump(mode="json"),
            "champion": theirs.model_dump(mode="json"),
        },
    )


def judge(
    canary: WindowMetrics, champion: WindowMetrics, cfg: CanarySettings
) -> tuple[Action, str, list[str]]:
    """-> (action, reason, the figures that had enough sample to be judged)."""
    judged: list[str] = []
    worse: list[str] = []
    rates = (
        ("positive_rate", canary.thumbs_up + canary.thumbs_down,
         champion.thumbs_up + champion.thumbs_down),
        ("intent_accuracy", canary.verified_intents, champion.verified_intents),
    )  # fmt: skip
    for name, n_canary, n_champion in rates:
        ours, theirs = getattr(canary, name), getattr(champion, name)
        if ours is None or theirs is None or min(n_canary, n_champion) < cfg.min_sample:
            continue
        judged.append(name)
        if ours < theirs - cfg.margin:
            worse.append(f"{name} {ours:.3f} < champion {theirs:.3f} - margin {cfg.margin}")
    p95, champion_p95 = canary.latency_p95_ms, champion.latency_p95_ms
    if (
        p95 is not None
        and champion_p95 is not None
        and min(canary.assistant_replies, champion.assistant_replies) >= cfg.min_sample
    ):
        judged.append("latency_p95_ms")
        if p95 > champion_p95 * cfg.max_latency_ratio:
            worse.append(
                f"p95 latency {p95:.0f} ms > champion {champion_p95:.0f} ms x "
                f"{cfg.max_latency_ratio}"
            )
    if worse:
        return "rollback", "; ".join(worse), judged
    if not judged:
        return "wait", f"fewer than {cfg.min_sample} observations on either side", judged
    rated = canary.thumbs_up + canary.thumbs_down
    if cfg.auto_promote and "positive_rate" in judged and rated >= cfg.promote_after:
        why = f"no worse than the champion on {', '.join(judged)} over {rated} rated replies"
        return "promote", why, judged
    return "keep", f"no worse on {', '.join(judged)} so far ({rated} rated replies)", judged
