"""`RunConfig`: everything one distillation run is trained with, typed, validated, stored as JSON.

It embeds the model's hyperparameters (`DistillConfig`) and adds the teacher and data knobs
(how many teacher replies, how long the encoder teacher trains, the held-out share, ...). Each
default is written here once: the CLI options, the worker's settings and the quickstart build
a `RunConfig` and take their defaults from its fields.

A run's config is stored on its row (`to_row`) and read back with `from_row`. Rows written
before the teacher and data knobs were stored hold only `distill` (and the loop's own flags,
`int8`, `compression`, `warm_start`, which `from_row` ignores or reads); the knobs they lack
come from the `fallback` config (the worker's settings), as they did at training time then.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill_worker.config import DistillConfig

DEFAULT_HANDOFF_PRECISION = 0.95
# auto: a CUDA GPU when torch sees one, else the CPU (distill_worker.devices)
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
DEFAULT_OOS_PRIOR = 0.1
# The handoff score chosen per run (`stages.calibrate.calibrate_logits`).
AUTO: Literal["auto"] = "auto"


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    distill: DistillConfig = Field(
        default_factory=DistillConfig, description="The student's and the stages' hyperparameters."
    )
    split: str = Field(default="train", min_length=1, description="Split of a CLINC150 JSON.")
    reply_budget: int = Field(
        default=1000,
        ge=0,
        description="The most teacher replies for stage 2 in one run, a ceiling on its cost (the "
        "slow part on a CPU); 0: no teacher. Under it, each intent gets its quota: "
        "`reply_share` of its prompts, at least `replies_per_intent`.",
    )
    replies_per_intent: int = Field(
        default=4,
        ge=0,
        description="Teacher replies per intent at least (when the intent has that many prompts).",
    )
    reply_share: float = Field(
        default=0.03,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Share of each intent's distinct prompts sent to the teacher (above the "
        "floor).",
    )
    eval_replies: int = Field(
        default=24, ge=0, description="Extra teacher replies on held-out prompts (reply quality)."
    )
    top_k: int = Field(
        default=20, ge=1, description="Token-level KD keeps the teacher's top-k next tokens."
    )
    # 3 epochs at 5e-5 left the teacher still gaining 1.3 points an epoch (HWU64) and BANKING77's
    # at 0.921 (2 epochs) where 5 at 6e-5 reached 0.938; early stopping on the calibration rows
    # ends it sooner where it has converged.
    encoder_teacher: Literal["minilm", "mpnet"] = Field(
        default="minilm",
        description="The encoder teacher: all-MiniLM-L6-v2 (6 layers, 384 wide; the student "
        "starts from its fine-tuned layers) or all-mpnet-base-v2 (12 layers, 768 wide, about "
        "7x MiniLM's fine-tuning time on a CPU; `chatdistill teacher prepare --encoder mpnet`, "
        "`bench` extra; the student then starts from pretrained MiniLM's layers and learns "
        "MPNet's intent distribution and features).",
    )
    teacher_epochs: int = Field(
        default=6, ge=1, description="Encoder-teacher fine-tuning epochs (the most it trains)."
    )
    teacher_lr: float = Field(
        default=6e-5, gt=0.0, allow_inf_nan=False, description="Encoder-teacher learning rate."
    )
    teacher_patience: int = Field(
        default=2,
        ge=1,
        description="Encoder-teacher early stopping: epochs without a better held-out intent "
        "accuracy (on the calibration rows) before it stops; the best epoch is kept.",
    )
    teacher_max_minutes: float | None = Field(
        default=360.0,
        gt=0.0,
        allow_inf_nan=False,
        description="Safety-net time cap of the encoder teacher's fine-tuning in minutes "
        "(None: no cap); epochs and early stopping are its budget.",
    )
    dev_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Without a snapshot: the held-out share."
    )
    adversarial_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Noisy copies of labelled train rows, for stage 1 (never the decoder).",
    )
    context_turns: int = Field(
        default=4, ge=0, description="Earlier turns of a conversation the student reads."
    )
    int8: bool = Field(default=True, description="Export INT8 graphs too.")
    handoff_precision: float | None = Field(
        default=DEFAULT_HANDOFF_PRECISION,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="The handoff threshold is calibrated so that this share of the bot's "
        "answers has the right intent (on the calibration rows); None: keep "
        "distill.handoff_threshold as it is.",
    )
    oos_prior: float = Field(
        default=DEFAULT_OOS_PRIOR,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="Share of out-of-scope messages assumed in real traffic when calibrating.",
    )
    handoff_score: Literal["auto", "max-softmax", "energy"] = Field(
        default=AUTO,
        description="What the calibrated handoff threshold is compared with: energy (the log "
        "of the summed exponentials of the in-scope intent logits), max-softmax (the "
        "predicted intent's probability), or auto: the one that tells the calibration rows "
        "from their negatives better (AUROC). Without calibration the bundle keeps "
        "max-softmax and distill.handoff_threshold.",
    )
    pseudo_oos: bool = Field(
        default=True,
        description="With fewer than 50 out-of-scope and out-of-domain negatives, also score "
        "each calibration row as if its intent were unknown (intents held out in folds) and "
        "use those as negatives for the handoff threshold.",
    )
    ood_corpus: str | None = Field(
        default=None,
        description="A file of out-of-domain messages (any --data format; labels ignored): "
        "negatives for the handoff threshold, never training rows. "
        "`chatdistill ood-corpus` builds one (by default in the data folder, where the CLI "
        "and the loop use it when none is named).",
    )
    unlabelled_corpus: str | None = Field(
        default=None,
        description="A file of customer messages without intent labels (any --data format; "
        "labels ignored): stage 1 learns the encoder teacher's intent distribution and "
        "features on them (KD only, no cross-entropy), never the decoder. Rows equal or close "
        "to a held-out row are left out; at most 10,000 (a seeded sample).",
    )

    device: str = Field(
        default="auto",
        pattern=DEVICE_PATTERN,
        description="Where the run trains: auto (a CUDA GPU when torch sees one, else the CPU), "
        "cpu, cuda or cuda:N. Under torchrun each rank takes the GPU of its LOCAL_RANK. The "
        "ONNX export always runs on the CPU.",
    )
    mixed_precision: bool = Field(
        default=True,
        description="On a CUDA GPU: bf16 autocast (fp16 with a loss scaler where bf16 is not "
        "supported); the CPU always trains in fp32.",
    )

    @field_validator("distill", mode="before")
    @classmethod
    def _distill_from_dict(cls, value: Any) -> Any:
        """A stored dict goes through DistillConfig's own checks (unknown fields, bounds)."""
        return DistillConfig.from_dict(value) if isinstance(value, dict) else value

    def to_row(self) -> dict[str, Any]:
        """The JSON-ready dict stored on the run's row (and logged at the start of a run)."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_row(cls, row: dict[str, Any], fallback: RunConfig | None = None) -> RunConfig:
        """The config stored on a run's row; keys that are not RunConfig fields (the loop's
        `compression`, `warm_start`, `kind`) are ignored, missing fields come from `fallback`
        (default: RunConfig's defaults)."""
        base = (fallback or cls()).to_row()
        return cls.model_validate(base | {k: v for k, v in row.items() if k in cls.model_fields})

    def with_changes(self, **changes: Any) -> RunConfig:
        """A validated copy with `changes` (fields of RunConfig, and `distill` as a dict of
        DistillConfig fields over the current ones)."""
        data = self.to_row()
        if isinstance(changes.get("distill"), dict):
            changes["distill"] = data["distill"] | changes["distill"]
        return type(self).model_validate(data | changes)


def default_of(name: str) -> Any:
    """The default of a RunConfig field, for a CLI option's default."""
    return RunConfig.model_fields[name].default
