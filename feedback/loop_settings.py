"""The continual loop's settings: the monitor's thresholds, the gate, the distillation worker
and the canary. Sections of `feedback.settings.Settings` (`CHATDISTILL_MONITOR__...`,
`CHATDISTILL_GATE__...` under `worker`, `CHATDISTILL_WORKER__...`, `CHATDISTILL_CANARY__...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator


class MonitorSettings(BaseModel):
    """Quality and latency thresholds per model version (drawn on the dashboard's charts), and
    how the continual loop's monitor acts on them: windows, minimum samples, hysteresis margins
    (a breached metric re-arms only once it is back past threshold + margin), cooldown."""

    enabled: bool = Field(
        default=True, description="Whether monitor ticks may open runs (they always record)."
    )
    min_positive_rate: float = Field(
        default=0.7, ge=0.0, le=1.0, description="Lowest acceptable share of thumbs up."
    )
    min_csat_mean: float = Field(
        default=3.5, ge=1.0, le=5.0, description="Lowest acceptable mean CSAT (1-5)."
    )
    min_intent_accuracy: float = Field(
        default=0.8, ge=0.0, le=1.0, description="Lowest acceptable operator-verified accuracy."
    )
    max_handoff_rate: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Highest acceptable share of handed-off chats."
    )
    max_latency_p95_ms: float = Field(
        default=500.0, gt=0.0, description="Highest acceptable p95 reply latency."
    )
    max_fallback_rate: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Highest acceptable share of replies the serving guard replaced "
        "(degenerate or low reward): the student is not good enough for its traffic.",
    )
    window_replies: int | None = Field(
        default=200,
        ge=1,
        description="Window: the last N rated replies of a version (None: no count bound).",
    )
    window_minutes: float | None = Field(
        default=24 * 60.0,
        gt=0.0,
        description="Window: the last T minutes (None: no time bound). Both set: the shorter.",
    )
    min_samples: int = Field(
        default=30,
        ge=1,
        description="Fewest rated replies (ratings), replies (latency) or conversations "
        "(handoff) a figure needs before it can breach or re-arm.",
    )
    min_verified_intents: int = Field(
        default=20, ge=1, description="Fewest operator-verified intents for the accuracy figure."
    )
    positive_rate_margin: float = Field(default=0.05, ge=0.0, le=1.0, description="Re-arm margin.")
    csat_margin: float = Field(default=0.25, ge=0.0, le=4.0, description="Re-arm margin.")
    intent_accuracy_margin: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Re-arm margin."
    )
    handoff_rate_margin: float = Field(default=0.05, ge=0.0, le=1.0, description="Re-arm margin.")
    fallback_rate_margin: float = Field(default=0.05, ge=0.0, le=1.0, description="Re-arm margin.")
    latency_margin_ms: float = Field(default=50.0, ge=0.0, description="Re-arm margin.")
    cooldown_minutes: float = Field(
        default=60.0, ge=0.0, description="Least time between two runs the monitor opens."
    )
    tick_seconds: float = Field(
        default=60.0, ge=1.0, description="How often beat sends the monitor tick."
    )
    schedule_cron: str | None = Field(
        default="0 3 * * *",
        description="Cron (minute hour day-of-month month day-of-week, UTC) of scheduled "
        "incremental runs; empty: none.",
    )

    @field_validator("schedule_cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if len(value.split()) != 5:
            raise ValueError(
                "monitor.schedule_cron needs five fields (minute hour day-of-month month "
                f"day-of-week), e.g. '0 3 * * *'; got {value!r}"
            )
        return value.strip()


class GateSettings(BaseModel):
    """How much worse than the champion a candidate may be on the held-out split, and the
    latency it must meet, before it may serve."""

    intent_accuracy_margin: float = Field(default=0.01, ge=0.0, le=1.0)
    oos_recall_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    degenerate_margin: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="How much larger a candidate's share of degenerate replies (looping, empty, "
        "cut off) may be than the champion's; at least one decoded row.",
    )
    reply_chrf_margin: float = Field(
        default=2.0, ge=0.0, le=100.0, description="chrF points vs the reference replies."
    )
    latency_budget_ms: float = Field(
        default=500.0, gt=0.0, description="p95 of one reply on this worker, ONNX Runtime."
    )
    eval_replies: int = Field(default=16, ge=1, le=1000, description="Held-out replies decoded.")


class WorkerSettings(BaseModel):
    """The distillation workers (Celery): queues, time limits, retries, and what a run trains."""

    concurrency: int = Field(default=1, ge=1, le=64, description="Processes per worker.")
    run_soft_time_limit_s: int = Field(
        default=4 * 3600, ge=10, description="A run past this gets a clean failure."
    )
    run_time_limit_s: int = Field(
        default=4 * 3600 + 300, ge=15, description="A run past this is killed."
    )
    visibility_timeout_s: int = Field(
        default=5 * 3600,
        ge=5,
        description="Redis: an unacknowledged task is redelivered after this; keep it longer "
        "than the longest run.",
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0.0, description="How often a running task marks its run alive."
    )
    lease_s: float = Field(
        default=120.0,
        gt=0.0,
        description="A run whose heartbeat is older than this is taken over by a redelivery.",
    )
    redispatch_after_s: float = Field(
        default=900.0,
        gt=0.0,
        description="The tick sends a queued or abandoned run's task again after this.",
    )
    max_retries: int = Field(default=5, ge=0, le=50, description="Retries of teacher outages.")
    retry_backoff_s: float = Field(
        default=30.0, gt=0.0, description="First retry delay; doubles each time (capped 30 min)."
    )
    sqla_polling_interval_s: float = Field(
        default=1.0, gt=0.0, description="Embedded broker (SQLAlchemy transport) polling."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve the worker's Prometheus gauges here."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Interface for the gauges; 0.0.0.0 in containers so Prometheus reaches it.",
    )
    responder_dir: Path | None = Field(
        default=None, description="Prepared responder; default `<data_dir>/teachers/...`."
    )
    responder_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible teacher (vLLM), e.g. http://teacher:8000/v1; None: "
        "the prepared responder runs in the worker. Its tokenizer is read from responder_dir.",
    )
    responder_model: str | None = Field(
        default=None, description="The model name the teacher server serves (with responder_url)."
    )
    responder_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the teacher server, if it asks for one."
    )
    responder_timeout_s: float = Field(
        default=120.0, gt=0.0, description="Read timeout of one teacher request."
    )
    responder_concurrency: int = Field(
        default=8, ge=1, le=256, description="Teacher requests in flight at once."
    )
    snapshot_settle_s: float = Field(
        default=5.0,
        ge=0.0,
        description="A snapshot takes feedback up to this long ago: rows stamped before but "
        "committed after it would otherwise be missed by this snapshot and the next.",
    )
    knowledge_path: Path | None = Field(default=None, description="Company policies (Markdown).")
    device: str | None = Field(
        default=None,
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where runs train: auto, cpu, cuda or cuda:N; None: RunConfig's default "
        "(auto: a CUDA GPU when torch sees one).",
    )
    distill_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes per run: more than 1 runs it under torchrun, data-parallel, one "
        "process per GPU (the pod's GPU count).",
    )
    distill: dict[str, Any] = Field(
        default_factory=dict, description="DistillConfig fields of incremental runs."
    )
    compression: dict[str, Any] = Field(
        default_factory=lambda: {"enc_layers": 1, "dec_layers": 1},
        description="DistillConfig overrides of latency (compression) runs, over `distill`.",
    )
    # A run's teacher knobs; None: the default of the RunConfig field of the same name
    # (distill_worker/run_config.py), written there once.
    reply_budget: int | None = Field(
        default=None, ge=1, description="The most teacher replies per run (a cost ceiling)."
    )
    replies_per_intent: int | None = Field(
        default=None, ge=0, description="Teacher replies per intent at least, under the ceiling."
    )
    encoder_teacher: Literal["minilm", "mpnet"] | None = Field(
        default=None,
        description="The encoder teacher each run fine-tunes: minilm (unset) or mpnet "
        "(stronger, about 7x the fine-tuning time on a CPU; needs the `bench` extra).",
    )
    teacher_epochs: int | None = Field(
        default=None, ge=1, description="Encoder-teacher fine-tuning epochs."
    )
    teacher_max_minutes: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        description="Safety-net time cap of the encoder teacher's fine-tuning in minutes; "
        "0: no cap. (The stage caps are `distill`'s stage1/stage2_max_minutes; null: no cap.)",
    )
    int8: bool | None = Field(default=None, description="Export INT8 graphs too.")
    ood_corpus: Path | None = Field(
        default=None,
        description="Out-of-domain messages (`chatdistill ood-corpus`): the negatives each run "
        "calibrates its handoff threshold on. Unset: the data folder's ood_corpus.jsonl, when "
        "there is one.",
    )
    handoff_score: Literal["auto", "max-softmax", "energy"] | None = Field(
        default=None,
        description="The score each run calibrates the handoff threshold on (unset: auto, the "
        "one that separates the calibration rows from their negatives better).",
    )
    gate: GateSettings = Field(default_factory=GateSettings)


class CanarySettings(BaseModel):
    """A `canary` alias served to a share of conversations, judged against the champion."""

    share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of conversations (sticky by id) the canary answers; 0 turns it off.",
    )
    min_sample: int = Field(
        default=50, ge=1, description="Rated (or verified) canary replies needed to judge it."
    )
    margin: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Roll back when a canary rate is below the champion's by more than this.",
    )
    max_latency_ratio: float = Field(
        default=1.5,
        gt=1.0,
        description="Roll back when canary p95 exceeds champion p95 times this.",
    )
    promote_after: int = Field(
        default=200,
        ge=1,
        description="Rated canary replies after which a canary no worse than the champion is "
        "promoted to production.",
    )
    auto_promote: bool = Field(
        default=True, description="Promote a canary that held up; off: only roll back."
    )
