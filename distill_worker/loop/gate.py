"""The promotion gate, as pure logic over two evaluations on the same held-out split.

The candidate passes when it is not worse than the champion beyond the configured margins on
intent accuracy, out-of-scope recall and reply quality (chrF), is not more degenerate (looping,
empty or cut-off replies) than the champion, and meets the latency budget.
On a split so small that one row moves a rate by more than its margin, the margin is one row. A
compression run must also answer faster than the champion: that is what it was for. Without
a champion (the first model) only the latency budget applies. A figure that one side cannot
produce (no OOS rows, no reference replies) is not compared, and the verdict says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from feedback.loop_settings import GateSettings


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]  # why it failed; empty when passed
    notes: list[str] = field(default_factory=list)  # what was not compared, and why
    candidate: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    gate: GateSettings,
    *,
    compression: bool = False,
) -> Verdict:
    reasons: list[str] = []
    notes: list[str] = []
    latency = candidate.get("latency_p95_ms")
    if latency is None:
        reasons.append("the candidate's reply latency could not be measured")
    elif latency > gate.latency_budget_ms:
        reasons.append(
            f"latency p95 {latency:.1f} ms is over the budget {gate.latency_budget_ms:g}"
        )
    if champion is None:
        notes.append("no champion: only the latency budget applies")
        return Verdict(not reasons, reasons, notes, candidate, None)
    comparisons = (
        ("intent_accuracy", gate.intent_accuracy_margin, "intent accuracy", "rows"),
        ("oos_recall", gate.oos_recall_margin, "out-of-scope recall", "oos_rows"),
        ("reply_chrf", gate.reply_chrf_margin, "reply chrF", None),
    )
    for key, margin, name, count in comparisons:
        new, old = candidate.get(key), champion.get(key)
        if new is None or old is None:
            notes.append(f"{name} not compared (no rows to measure it on)")
            continue
        rows = int(candidate.get(count) or 0) if count else 0
        if rows and 1.0 / rows > margin:
            # On a small held-out split one row moves a rate by more than the margin: a
            # candidate one row behind is within noise, not worse.
            notes.append(f"{name}: margin widened to one row of {rows} ({1.0 / rows:.3g})")
            margin = 1.0 / rows
        if new < old - margin:
            reasons.append(f"{name} {new:.4g} is below the champion's {old:.4g} - {margin:g}")
    new_bad, old_bad = candidate.get("degenerate_share"), champion.get("degenerate_share")
    if new_bad is None or old_bad is None:
        notes.append("degenerate replies not compared (no replies decoded on one side)")
    else:
        # Higher is worse. A margin under one decoded row is widened to one row (noise).
        decoded = int(candidate.get("decoded_rows") or 0)
        margin = max(gate.degenerate_margin, 1.0 / decoded if decoded else 0.0)
        if new_bad > old_bad + margin:
            reasons.append(
                f"degenerate replies {new_bad:.4g} exceed the champion's {old_bad:.4g} + "
                f"{margin:.3g}"
            )
    if compression:
        old_latency = champion.get("latency_p95_ms")
        if latency is not None and old_latency is not None and latency >= old_latency:
            reasons.append(
                f"a compression run must be faster: p95 {latency:.1f} ms vs the champion's "
                f"{old_latency:.1f} ms"
            )
    return Verdict(not reasons, reasons, notes, candidate, champion)
