"""The simulation's PNG: rolling accuracy and p95 latency over time, with the monitor's
thresholds, the shift, runs (opened / finished) and production moves marked.

matplotlib comes with the `bench` extra; it is imported here only, and only when plotting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill_worker.simulate.summary import Point, rolling_accuracy, rolling_p95


def plot(
    points: Sequence[Point],
    timeline: dict[str, list[dict[str, Any]]],
    out: Path,
    *,
    shift_at: float,
    accuracy_threshold: float,
    latency_threshold_ms: float,
    window: int,
    title: str,
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("plotting needs matplotlib: pip install 'chatdistill[bench]'") from exc
    ordered = sorted(points, key=lambda p: p.t)
    acc = rolling_accuracy(ordered, window)
    lat = rolling_p95(ordered, window)
    fig, (ax_acc, ax_lat) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    if acc:
        ax_acc.plot([t for t, _ in acc], [a for _, a in acc], color="tab:blue",
                    label=f"intent accuracy (last {window} replies)")  # fmt: skip
    ax_acc.axhline(accuracy_threshold, color="tab:red", linestyle="--",
                   label=f"threshold {accuracy_threshold:g}")  # fmt: skip
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy")
    if lat:
        ax_lat.plot([t for t, _ in lat], [v for _, v in lat], color="tab:purple",
                    label=f"p95 server latency (last {window})")  # fmt: skip
    ax_lat.axhline(latency_threshold_ms, color="tab:red", linestyle="--",
                   label=f"threshold {latency_threshold_ms:g} ms")  # fmt: skip
    ax_lat.set_ylabel("ms")
    ax_lat.set_xlabel("seconds since start")
    for ax in (ax_acc, ax_lat):
        ax.axvline(shift_at, color="black", linestyle=":", label="traffic shift")
        labelled: set[str] = set()
        for run in timeline.get("runs", []):
            for key, name, style in (("opened", "run opened", "-"), ("finished", "", "--")):
                if run.get(key) is None:
                    continue
                name = name or f"run {run.get('status', 'finished')}"
                colour = "tab:orange" if key == "opened" or run.get("status") == "succeeded" \
                    else "tab:gray"  # fmt: skip
                ax.axvline(run[key], color=colour, linestyle=style, alpha=0.7,
                           label=None if name in labelled else name)  # fmt: skip
                labelled.add(name)
        moves = [m for m in timeline.get("promotions", []) if (m.get("at") or -1) >= 0]
        for i, move in enumerate(moves):
            ax.axvline(move["at"], color="tab:green", linewidth=2,
                       label="promotion" if i == 0 else None)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    ax_acc.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
