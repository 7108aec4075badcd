"""The serving guard: a generated reply reaches the customer only when it is fit to send.

Every reply the student writes is checked for degeneration (`bundle_runtime.quality`) and its
reward (the reward head's sigmoid score of the (context, reply) pair) is compared with the
bundle's threshold (`Manifest.guard["min_reward"]`, 0 turns that check off; a serving setting
may override it). A reply that fails is replaced by the approved answer of its predicted intent
(operators set them in the dashboard; a distillation run seeds one per intent from the data's
reference replies), or, when the intent has none, the conversation is handed to a human.

A reply is also unfit when it states a figure (a price, a duration, a count, a time of day)
that neither the intent's approved answer nor the customer's own message contains
(`unsupported_figures`): a small student copies the words of its references well and their
numbers badly ("locked for 2 business days" where the policy says 15 minutes), and a wrong
figure is the costliest kind of wrong reply. The check needs an approved answer to hold the
figures against; without one it is skipped.

Before those checks, an identifier (a run of 5 or more digits: an order, invoice or account
number) that the reply states but neither the customer nor the approved answer does is replaced
by the customer's own when their message holds exactly one (`copy_identifiers`): the student
learns to echo the number ("your order 3707955617") but writes one of its training numbers
instead. On Bitext's dev prompts that was 4 in 5 of the replies the figure check stopped.

Replies the model already hands off (out of scope, low confidence) pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bundle_runtime.quality import degenerate_reason

if TYPE_CHECKING:
    from bundle_runtime.onnx_student import StudentReply

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


_FIGURE = re.compile(r"\d+(?:[.,:]\d+)*")
# "1. Log in", "2) Open": a step's number, not a figure the reply states (a short number, a dot
# or parenthesis, then a capitalised word)
_LIST_MARKER = re.compile(r"(?<![\w.,:])\d{1,2}[.)](?=\s+[A-Z])")


def figures(text: str) -> set[str]:
    """The figures a text states: digit runs with their decimal or time separators
    ("9.90", "4,90" read as "4.90", "8:00"), leading zeros kept; the numbers of list steps
    ("1. Log in") are not figures."""
    text = _LIST_MARKER.sub(" ", text)
    return {m.group().replace(",", ".") for m in _FIGURE.finditer(text)}


_IDENTIFIER = re.compile(r"(?<![\d.,:])\d{5,}(?![.,:]?\d)")


def copy_identifiers(text: str, customer_text: str, approved: str | None = None) -> str:
    """`text` with every identifier that neither `customer_text` nor `approved` states replaced
    by the customer's identifier, when `customer_text` states exactly one (see the module
    docstring); else `text` unchanged."""
    theirs = set(_IDENTIFIER.findall(customer_text))
    if len(theirs) != 1:
        return text
    (own,) = theirs
    known = theirs | set(_IDENTIFIER.findall(approved or ""))
    return _IDENTIFIER.sub(lambda m: m.group() if m.group() in known else own, text)


def unsupported_figures(text: str, sources: Iterable[str]) -> set[str]:
    """The figures of `text` that none of `sources` states."""
    allowed: set[str] = set()
    for source in sources:
        allowed |= figures(source)
    return figures(text) - allowed


def unfit_reason(
    text: str,
    finish_reason: str,
    reward: float,
    min_reward: float,
    *,
    approved: str | None = None,
    customer_text: str = "",
) -> str | None:
    """Why a generated reply may not be sent (degenerate_<why> | low_reward |
    unsupported_figure), or None. `approved`: the predicted intent's approved answer, the
    figures' reference; `customer_text`: the message being answered (its figures may be echoed)."""
    why = degenerate_reason(text, finish_reason)
    if why is not None:
        return f"degenerate_{why}"
    if reward < min_reward:
        return "low_reward"
    if approved and unsupported_figures(text, (approved, customer_text)):
        return "unsupported_figure"
    return None


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


def decide(reply: StudentReply, approved: str | None, customer_text: str) -> GuardDecision:
    """What `reply` sends: `approved` is its predicted intent's approved answer (the store's,
    or a bundle's seed), `customer_text` the message answered, as typed."""
    text, unfit = reply.text, None
    if reply.handoff_reason is None:
        text = copy_identifiers(text, customer_text, approved)
        unfit = unfit_reason(
            text,
            reply.finish_reason,
            reply.reward,
            reply.guard_min_reward,
            approved=approved,
            customer_text=customer_text,
        )
    return guard_reply(
        text=text, handoff_reason=reply.handoff_reason, unfit=unfit, approved=approved
    )
