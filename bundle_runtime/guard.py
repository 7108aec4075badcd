"""The serving guard: a generated reply reaches the customer only when it is fit to send.

Every reply the student writes is checked for degeneration (`bundle_runtime.quality`) and its
reward (the reward head's sigmoid score of the (context, reply) pair) is compared with the
bundle's threshold (`Manifest.guard["min_reward"]`, 0 turns that check off; a serving setting
may override it). A reply that fails is replaced by the approved answer of its predicted intent
(operators set them in the dashboard; a distillation run seeds one per intent from the data's
reference replies), or, when the intent has none, the conversation is handed to a human.

Replies the model already hands off (out of scope, low confidence) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bundle_runtime.quality import degenerate_reason

ReplySource = Literal["generated", "approved", "handoff"]
LOW_QUALITY = "low_quality"  # the handoff reason when no approved answer can stand in


@dataclass(frozen=True)
class GuardDecision:
    text: str  # what the customer gets
    source: ReplySource
    reason: str | None  # why the generated text was not sent: degenerate_<why> | low_reward
    handoff_reason: str | None  # set when the conversation goes to a human


def min_reward_of(guard: Mapping[str, Any] | None, override: float | None = None) -> float:
    """The reward threshold: the serving override, else the bundle's, else 0 (off)."""
    if override is not None:
        return float(override)
    value = (guard or {}).get("min_reward", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def unfit_reason(text: str, finish_reason: str, reward: float, min_reward: float) -> str | None:
    """Why a generated reply may not be sent (degenerate_<why> | low_reward), or None."""
    why = degenerate_reason(text, finish_reason)
    if why is not None:
        return f"degenerate_{why}"
    return "low_reward" if reward < min_reward else None


def guard_reply(
    *,
    text: str,
    handoff_reason: str | None,
    unfit: str | None,
    approved: str | None,
) -> GuardDecision:
    """What one reply sends: `unfit` from `unfit_reason`, `approved` the predicted intent's
    approved answer (looked up only when the reply is unfit)."""
    if handoff_reason is not None:
        return GuardDecision(text, "handoff", None, handoff_reason)
    if unfit is None:
        return GuardDecision(text, "generated", None, None)
    if approved:
        return GuardDecision(approved, "approved", unfit, None)
    return GuardDecision(text, "handoff", unfit, LOW_QUALITY)
