"""A run's training budgets as it spent them: `metrics["budgets"]` in the bundle manifest.

The encoder teacher and stage 1 train for at most their epochs and stop early on the run's
calibration rows; stage 2 runs its epochs. Wall-clock caps (`RunConfig.teacher_max_minutes`,
`DistillConfig.stage1_max_minutes` / `stage2_max_minutes`) are only a safety net: a run that
hits one depends on how fast the machine was, so it is named in `caps_hit`, in the log and in
the last line `chatdistill distill` prints (`cap_note`).

    {"teacher": {"stop_reason": "early_stop", "epochs_run": 2, "max_epochs": 3,
                 "best_epoch": 1, "seconds": 301.4, "cap_minutes": 60.0, ...},
     "stage1": {...}, "stage2": {...}, "caps_hit": ["stage1"]}

`stop_reason` is "epochs" (all ran), "early_stop" or "time_limit".
"""

from __future__ import annotations

from typing import Any

from distill_worker.run_config import RunConfig

NAMES = {"teacher": "the encoder teacher", "stage1": "stage 1", "stage2": "stage 2"}


def teacher_budget(report: dict[str, Any] | None, config: RunConfig) -> dict[str, Any]:
    """The encoder teacher's fine-tune report (`EncoderTeacher.meta["finetune"]`), with its cap;
    the report of a teacher reused from the work folder is the one it was trained with."""
    report = dict(report or {})
    history = report.pop("epochs", [])
    out = {
        "stop_reason": report.pop("stop_reason", None)
        or ("time_limit" if report.pop("stopped_early", False) else "epochs"),  # older reports
        "epochs_run": report.pop("epochs_run", len(history)),
        "max_epochs": report.pop("max_epochs", config.teacher_epochs),
        "best_epoch": report.pop("best_epoch", None),
        "seconds": report.pop("seconds", None),
        "cap_minutes": report.pop("max_minutes", config.teacher_max_minutes),
    }
    return out | report | {"epochs": history}


def stage_budget(metrics: dict[str, Any], epochs: int, cap_minutes: float | None) -> dict[str, Any]:
    """A stage's figures from its `train()` metrics."""
    early = metrics.get("early_stopping") or {}
    return {
        "stop_reason": metrics.get("stop_reason") or "epochs",
        "epochs_run": metrics.get("epochs_run"),
        "max_epochs": epochs,
        "best_epoch": early.get("best_epoch"),
        "seconds": metrics.get("elapsed_s"),
        "cap_minutes": cap_minutes,
        "steps": metrics.get("step"),
        "total_steps": metrics.get("total_steps"),
    }


def run_budgets(
    teacher: dict[str, Any], stage1: dict[str, Any], stage2: dict[str, Any]
) -> dict[str, Any]:
    parts = {"teacher": teacher, "stage1": stage1, "stage2": stage2}
    hit = [name for name, part in parts.items() if part.get("stop_reason") == "time_limit"]
    return {**parts, "caps_hit": hit}


def cap_note(budgets: dict[str, Any] | None) -> str:
    """' (stage 1 stopped at its 20-minute cap)' for the caps a run hit; '' for none."""
    budgets = budgets or {}
    parts = []
    for name in budgets.get("caps_hit", []):
        minutes = budgets.get(name, {}).get("cap_minutes")
        cap = f"its {minutes:g}-minute cap" if isinstance(minutes, int | float) else "its cap"
        parts.append(f"{NAMES.get(name, name)} stopped at {cap}")
    return f" ({'; '.join(parts)})" if parts else ""
