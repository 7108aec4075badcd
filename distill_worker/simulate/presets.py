"""Settings a simulation starts its stack with (each can be overridden with `--set`).

A simulation compresses days into minutes: small monitor windows and fast ticks, no schedule,
a short cooldown, and (with `--student tiny`) the tiny student of the loop's end-to-end tests
with small teacher budgets, so one run takes about a minute on a 2-core machine.
"""

from __future__ import annotations

import json

TINY_STUDENT = {
    "enc_layers": 1,
    "dec_layers": 1,
    "dec_hidden": 64,
    "dec_heads": 2,
    "dec_ffn": 128,
    "stage1_epochs": 2,
    "stage2_epochs": 2,
    "stage1_batch_size": 16,
    "stage2_batch_size": 8,
    "max_reply_tokens": 16,
    "checkpoint_every": 5,
}

FAST_LOOP = {
    # A tiny first student answers about 3 in 4 right; the shift takes that to about 2 in 5.
    "MONITOR__MIN_INTENT_ACCURACY": "0.6",
    "MONITOR__MIN_POSITIVE_RATE": "0.6",
    "MONITOR__WINDOW_REPLIES": "40",
    "MONITOR__WINDOW_MINUTES": "30",
    "MONITOR__MIN_SAMPLES": "20",
    "MONITOR__MIN_VERIFIED_INTENTS": "8",
    "MONITOR__TICK_SECONDS": "5",
    "MONITOR__COOLDOWN_MINUTES": "2",
    "MONITOR__SCHEDULE_CRON": "",
    "EVENTS__POLL_INTERVAL_S": "2",
}

TINY_BUDGETS = {
    "WORKER__DISTILL": json.dumps(TINY_STUDENT),
    "WORKER__REPLY_BUDGET": "16",
    "WORKER__TEACHER_EPOCHS": "1",
    "WORKER__GATE__EVAL_REPLIES": "4",
}


def stack_settings(student: str) -> dict[str, str]:
    """CHATDISTILL_* variables (without the prefix) for a simulation's stack."""
    values = dict(FAST_LOOP)
    if student == "tiny":
        values.update(TINY_BUDGETS)
    return values


def monitor_thresholds(values: dict[str, str]) -> tuple[float, float]:
    """(accuracy threshold, p95 latency threshold in ms) the started stack runs with."""
    from feedback.loop_settings import MonitorSettings

    monitor = {
        key.removeprefix("MONITOR__").lower(): value
        for key, value in values.items()
        if key.startswith("MONITOR__")
    }
    settings = MonitorSettings.model_validate(monitor)
    return settings.min_intent_accuracy, settings.max_latency_p95_ms
