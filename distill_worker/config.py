"""`DistillConfig`: every hyperparameter of one distillation run, validated, stored as JSON.

The config is stored on the run's row (`to_json`), so any run can be rebuilt from the database
(`from_json`). It holds no paths, no secrets and nothing derived from the data. The student's
encoder width/heads/FFN are not here: they are the encoder teacher's (see `model/student.py`);
only the sizes that are free to choose are.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Init = Literal["teacher_layers", "random"]
RewardObjective = Literal["ratings_weighted", "kto"]


@dataclass(frozen=True)
class DistillConfig:
    seed: int = 0
    max_source_tokens: int = 128
    # Tokens of a reply (teacher replies, training targets, the served limit); 0: from the
    # data's reference replies (`data/reply_length.py`), 64 where there are none.
    max_reply_tokens: int = 0
    # student sizes
    enc_layers: int = 3
    dec_layers: int = 3
    dec_hidden: int = 256
    dec_heads: int = 4
    dec_ffn: int = 1024
    dropout: float = 0.1
    init: Init = "teacher_layers"
    # stage 1: encoder
    stage1_epochs: int = 10  # the most: early stopping on the calibration rows ends it sooner
    stage1_batch_size: int = 32
    stage1_lr: float = 1e-4
    stage1_head_lr: float = 1e-3  # intent head and feature projection
    temperature: float = 3.0  # tau of the intent logit KD
    feature_weight: float = 0.7  # start weights of feature MSE / intent logit KD / task CE
    intent_kd_weight: float = 0.2
    task_ce_weight: float = 0.1
    dynamic_weights: bool = True
    # Early stopping of stage 1 on the run's calibration rows: stop after this many epochs in
    # a row without a better held-out intent accuracy (ties: cross-entropy); stage1_epochs is
    # the most it trains. The best epoch's weights are kept.
    stage1_patience: int = 2
    # Time caps in minutes (None: no cap): a safety net, not the budget (epochs and early
    # stopping are; a run that hits one depends on the machine's speed and says so in its
    # metrics). Far above what a normal run takes on 2 CPU cores (see the README).
    stage1_max_minutes: float | None = 240.0
    # curriculum (distill_worker/data/curriculum.py): tiers by the teacher's doubt within each
    # intent; the first `curriculum_epochs` epochs go easy to hard. curriculum_tiers 1 turns it
    # off. On by default: +7.6 points after a 1-epoch budget, +0.6 after 4 (bench/curriculum.py).
    curriculum_tiers: int = 3
    curriculum_epochs: int = 1
    # best-of-n teacher replies (distill_worker/data/best_of_n.py): the greedy reply and
    # best_of_n - 1 sampled at variant_temperature; the champion's reward head picks one.
    # 1 keeps the greedy reply (and costs one teacher call per prompt).
    best_of_n: int = 1
    variant_temperature: float = 0.8
    # An intent with at least this many reference replies in the training data (data-set
    # replies, operator corrections, agents' replies) is not sent to the teacher: its references
    # teach the decoder, and the teacher's replies there only add a second, weaker voice (the
    # quickstart's demo: bench figures in the README). 0 asks the teacher about every intent.
    teacher_skip_references: int = 8
    # stage 2: decoder + reward head
    stage2_epochs: int = 12  # the most: early stopping on held-out replies ends it sooner
    stage2_batch_size: int = 16
    stage2_lr: float = 5e-4
    stage2_encoder_lr: float = 0.0  # 0: encoder frozen; > 0: trained at this (low) LR
    token_kd_weight: float = 0.5  # 0 disables token-level (top-k) KD
    seq_kd_weight: float = 1.0  # CE on teacher replies and operator corrections
    reward_weight: float = 0.5
    reward_objective: RewardObjective = "ratings_weighted"
    kto_beta: float = 0.1  # scale of the policy/reference log-ratio in the KTO objective
    # Early stopping of stage 2 on held-out reference replies (the calibration rows', else a
    # tenth of the stage-2 replies set aside): stop after this many epochs in a row without a
    # lower reply cross-entropy; stage2_epochs is the most it trains. The best epoch's decoder
    # and reward head are kept.
    stage2_patience: int = 2
    stage2_max_minutes: float | None = 60.0
    # both stages
    grad_clip: float = 1.0
    warmup_fraction: float = 0.06
    log_every: int = 10
    checkpoint_every: int = 200  # optimizer steps
    handoff_threshold: float = 0.5  # intent confidence below this hands over to a human

    def __post_init__(self) -> None:
        errors = _problems(self)
        if errors:
            raise ValueError("invalid DistillConfig: " + "; ".join(errors))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DistillConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("DistillConfig JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown DistillConfig fields {sorted(unknown)}: remove them or upgrade the worker"
            )
        return cls(**data)

    @property
    def stage1_start_weights(self) -> dict[str, float]:
        return {
            "feature": self.feature_weight,
            "intent_kd": self.intent_kd_weight,
            "task_ce": self.task_ce_weight,
        }


def _problems(c: DistillConfig) -> list[str]:
    out: list[str] = []
    positive_ints = (
        "max_source_tokens",
        "enc_layers",
        "dec_layers",
        "dec_hidden",
        "dec_heads",
        "dec_ffn",
        "stage1_epochs",
        "stage1_batch_size",
        "stage1_patience",
        "curriculum_tiers",
        "best_of_n",
        "stage2_epochs",
        "stage2_batch_size",
        "stage2_patience",
        "log_every",
        "checkpoint_every",
    )
    for name in positive_ints:
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} must be an integer >= 1, got {value!r}")
    reply = c.max_reply_tokens
    if not isinstance(reply, int) or isinstance(reply, bool) or reply < 0:
        out.append(f"max_reply_tokens must be an integer >= 0 (0: from the data), got {reply!r}")
    if not isinstance(c.seed, int) or isinstance(c.seed, bool) or c.seed < 0:
        out.append(f"seed must be an integer >= 0, got {c.seed!r}")
    sizes_ok = isinstance(c.dec_hidden, int) and isinstance(c.dec_heads, int) and c.dec_heads > 0
    if sizes_ok and c.dec_hidden % c.dec_heads:
        out.append(f"dec_hidden ({c.dec_hidden}) must be divisible by dec_heads ({c.dec_heads})")
    if not isinstance(c.teacher_skip_references, int) or c.teacher_skip_references < 0:
        out.append(
            f"teacher_skip_references must be an integer >= 0, got {c.teacher_skip_references!r}"
        )
    if not isinstance(c.curriculum_epochs, int) or c.curriculum_epochs < 0:
        out.append(f"curriculum_epochs must be an integer >= 0, got {c.curriculum_epochs!r}")
    if not 0.0 <= c.dropout < 1.0:
        out.append(f"dropout must be in [0, 1), got {c.dropout}")
    if c.init not in ("teacher_layers", "random"):
        out.append(f"init must be 'teacher_layers' or 'random', got {c.init!r}")
    if c.reward_objective not in ("ratings_weighted", "kto"):
        out.append(
            f"reward_objective must be 'ratings_weighted' or 'kto', got {c.reward_objective!r}"
        )
    names = ("stage1_lr", "stage1_head_lr", "stage2_lr", "temperature", "kto_beta")
    for name in (*names, "variant_temperature"):
        if not _finite(getattr(c, name)) or getattr(c, name) <= 0:
            out.append(f"{name} must be a finite number > 0, got {getattr(c, name)!r}")
    non_negative = (
        "stage2_encoder_lr",
        "feature_weight",
        "intent_kd_weight",
        "task_ce_weight",
        "token_kd_weight",
        "seq_kd_weight",
        "reward_weight",
        "grad_clip",
    )
    for name in non_negative:
        if not _finite(getattr(c, name)) or getattr(c, name) < 0:
            out.append(f"{name} must be a finite number >= 0, got {getattr(c, name)!r}")
    if not out and sum(c.stage1_start_weights.values()) <= 0:
        out.append("at least one of feature_weight, intent_kd_weight, task_ce_weight must be > 0")
    if not out and c.seq_kd_weight + c.token_kd_weight + c.reward_weight <= 0:
        out.append("at least one of seq_kd_weight, token_kd_weight, reward_weight must be > 0")
    if not _finite(c.warmup_fraction) or not 0.0 <= c.warmup_fraction < 1.0:
        out.append(f"warmup_fraction must be in [0, 1), got {c.warmup_fraction!r}")
    if not _finite(c.handoff_threshold) or not 0.0 <= c.handoff_threshold <= 1.0:
        out.append(f"handoff_threshold must be in [0, 1], got {c.handoff_threshold!r}")
    for name in ("stage1_max_minutes", "stage2_max_minutes"):
        value = getattr(c, name)
        if value is not None and (not _finite(value) or value <= 0):
            out.append(f"{name} must be None (no limit) or a number > 0, got {value!r}")
    return out


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
