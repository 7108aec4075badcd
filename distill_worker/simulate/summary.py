"""From recorded observations and the system's timeline to the numbers the simulation reports.

Pure functions; times are seconds since the simulation started. Definitions:

* rolling accuracy at an observation: share correct among the last `window` observations;
* before: accuracy over the last `window` observations before the shift;
* dip: the lowest rolling accuracy after the shift and before the recovery (or the end);
* crossed: the first time after the shift the rolling accuracy is below the threshold;
* detected: the first run opened after the shift (the monitor acting is what we can see);
* promoted: the first production move after the shift (the loop may need several);
* recovered: the first time the rolling accuracy is back at `recover_at` (default: the
  threshold; the command uses threshold + a margin, so noise at the line is no recovery)
  while a version promoted after the shift serves and has answered a full window;
* after: accuracy over the last `window` observations of the last promoted version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from feedback.monitor import percentile


class Point(Protocol):
    @property
    def t(self) -> float: ...

    @property
    def correct(self) -> bool: ...

    @property
    def model_version(self) -> str | None: ...

    @property
    def server_latency_ms(self) -> float | None: ...


def rolling_accuracy(points: Sequence[Point], window: int) -> list[tuple[float, float]]:
    """(t, share correct of the last `window` points up to and including t), per point."""
    if window < 1:
        raise ValueError("the rolling window holds at least one observation")
    out: list[tuple[float, float]] = []
    hits = 0
    for i, point in enumerate(points):
        hits += point.correct
        if i >= window:
            hits -= points[i - window].correct
        out.append((point.t, hits / min(i + 1, window)))
    return out


def rolling_p95(points: Sequence[Point], window: int) -> list[tuple[float, float]]:
    """(t, p95 of the server latency of the last `window` answered points)."""
    answered = [p for p in points if p.server_latency_ms is not None]
    out: list[tuple[float, float]] = []
    for i, point in enumerate(answered):
        recent = answered[max(0, i - window + 1) : i + 1]
        values = sorted(float(p.server_latency_ms or 0.0) for p in recent)
        out.append((point.t, percentile(values, 0.95) or 0.0))
    return out


def accuracy(points: Sequence[Point]) -> float | None:
    return sum(p.correct for p in points) / len(points) if points else None


def summarize(
    points: Sequence[Point],
    timeline: dict[str, list[dict[str, Any]]],
    *,
    shift_at: float,
    threshold: float,
    window: int,
    recover_at: float | None = None,
) -> dict[str, Any]:
    """The summary JSON (see the module docstring for each definition); None where it did
    not happen (e.g. no recovery before the simulation ended)."""
    ordered = sorted(points, key=lambda p: p.t)
    roll = rolling_accuracy(ordered, window)
    before_pts = [p for p in ordered if p.t < shift_at][-window:]
    after_shift = [(t, a) for t, a in roll if t >= shift_at]
    promotions = [e for e in timeline.get("promotions", []) if (e.get("at") or -1) >= shift_at]
    runs = [r for r in timeline.get("runs", []) if (r.get("opened") or -1) >= shift_at]
    first_at = float(promotions[0]["at"]) if promotions else None
    crossed = next((t for t, a in after_shift if a < threshold), None)
    target = threshold if recover_at is None else recover_at
    recovered, recovered_by = recovery(ordered, roll, promotions, target, threshold, window)
    dip_span = [a for t, a in after_shift if recovered is None or t < recovered]
    last = promotions[-1] if promotions else None
    after_pts: list[Point] = []
    if last is not None:
        after_pts = [
            p for p in ordered if p.t >= last["at"] and p.model_version == last["version"]
        ][-window:]
    detected = runs[0]["opened"] if runs else None

    def since_shift(t: float | None) -> float | None:
        return None if t is None else round(t - shift_at, 1)

    return {
        "observations": len(ordered),
        "failed_requests": sum(1 for p in ordered if not _ok(p)),
        "shift_at_s": round(shift_at, 1),
        "threshold": threshold,
        "recover_at": target,
        "window": window,
        "accuracy_before": _round(accuracy(before_pts)),
        "accuracy_dip": _round(min(dip_span) if dip_span else None),
        "accuracy_after": _round(accuracy(after_pts)),
        "crossed_after_shift_s": since_shift(crossed),
        "time_to_detect_s": since_shift(detected),
        "time_to_promotion_s": since_shift(first_at),
        "threshold_to_promotion_s": (
            round(first_at - crossed, 1) if first_at is not None and crossed is not None else None
        ),
        "time_to_recover_s": since_shift(recovered),
        "recovered_by": recovered_by,
        "promoted_versions": [e["version"] for e in promotions],
        "runs_after_shift": len(runs),
    }


def recovery(
    ordered: Sequence[Point],
    roll: list[tuple[float, float]],
    promotions: list[dict[str, Any]],
    target: float,
    threshold: float,
    window: int,
) -> tuple[float | None, str | None]:
    """The first time a version promoted after the shift has answered a full window, the
    rolling accuracy is at `target`, and it then stays at or above `threshold` while that
    version serves (for `window` more answers at least: a blip is no recovery);
    -> (time, version)."""
    for i, move in enumerate(promotions):
        at = float(move["at"])
        until = float(promotions[i + 1]["at"]) if i + 1 < len(promotions) else float("inf")
        served = [p for p in ordered if at <= p.t < until and p.model_version == move["version"]]
        if len(served) < window:
            continue
        span = [(t, a) for t, a in roll if served[window - 1].t <= t < until]
        for k, (t, a) in enumerate(span):
            rest = [later for _, later in span[k:]]
            if a >= target and len(rest) > window and min(rest) >= threshold:
                return t, str(move["version"])
    return None, None


def _ok(point: Point) -> bool:
    return getattr(point, "status", "ok") == "ok"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
