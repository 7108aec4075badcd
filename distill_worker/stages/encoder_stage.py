"""Stage 1: distil the encoder teacher into the student's encoder and intent head.

Objectives per batch (each over the rows that have what it needs):
- `feature`: MSE between the teacher's pooled features and the student's pooled output passed
  through a learned projection (enc_hidden -> teacher_feature_dim, owned by this stage);
- `intent_kd`: KL between teacher and student intent distributions at temperature tau;
- `task_ce`: cross-entropy on gold labels (label -1 rows only feed the two KD terms).
The weighted sum uses `DynamicLossWeights` (static start weights when `dynamic_weights` is off).
AdamW (weight decay 0.01) with the encoder at `stage1_lr` and head + projection at
`stage1_head_lr`, linear warmup then linear decay, global grad-norm clipping.

Early stopping (with `dev` examples, the run's calibration rows): after each epoch the student's
intent accuracy and cross-entropy on `dev` are measured; training stops after `stage1_patience`
epochs without a better one, and the best epoch's encoder and intent head are put back at the
end (also when all epochs ran, or the time cap stopped it part-way and the partial epoch is not
better). Without `dev` every epoch runs and the last weights stay, as before.

Device and precision: the stage trains where the student's parameters are. The forward passes
and the losses (which cast the logits to fp32) run under `precision.autocast()`, the dev scoring
too; fp16 steps go through the precision's `GradScaler`, whose state is kept in the checkpoint
(`extra_meta["grad_scaler"]`). The default precision is `devices.precision_for(device)`: bf16 on
a recent GPU, fp32 on the CPU, where the maths is exactly that of a run without the setting.

Recipe shape: `setup()`, `train(max_steps)`, `save_checkpoint()`, `cleanup()`. `setup()` resumes
from the newest checkpoint in `checkpoint_dir` when there is one (the early-stopping state and
the training seconds spent included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distill_worker import distributed
from distill_worker.config import DistillConfig
from distill_worker.data.curriculum import assign_tiers
from distill_worker.data.examples import IntentExample
from distill_worker.devices import Precision, precision_for
from distill_worker.model.student import Student
from distill_worker.stages.early_stopping import EarlyStopping, accuracy_and_loss, keep_best
from distill_worker.stages.losses import DynamicLossWeights, feature_mse, logit_kd, task_ce
from distill_worker.stages.training import (
    Checkpoint,
    LoopPosition,
    LoopSpec,
    MetricsLogger,
    check_precision,
    check_resumable,
    optimizer_step,
    pad,
    restore_rng,
    run_epochs,
    to_device,
    truncate_source,
    warmup_linear_decay,
)

STAGE = "stage1_encoder"
_TRAINED = ("encoder.", "intent_head.")  # the student's parameters stage 1 trains
_ES_PREFIX = "early_stopping."


@dataclass
class IntentBatch:
    input_ids: Tensor  # [B,S]
    attention_mask: Tensor  # [B,S]
    labels: Tensor  # [B], -1 unlabelled
    teacher_logits: Tensor  # [B,C], zeros where absent
    has_logits: Tensor  # [B] bool
    teacher_features: Tensor  # [B,F], zeros where absent
    has_features: Tensor  # [B] bool


def collate_intents(
    examples: list[IntentExample], max_source_tokens: int, n_intents: int, feature_dim: int
) -> IntentBatch:
    ids, mask = pad([truncate_source(e.input_ids, max_source_tokens) for e in examples])
    logits = torch.zeros(len(examples), n_intents)
    features = torch.zeros(len(examples), feature_dim)
    for i, e in enumerate(examples):
        if e.teacher_logits is not None:
            logits[i] = torch.tensor(e.teacher_logits)
        if e.teacher_features is not None:
            features[i] = torch.tensor(e.teacher_features)
    return IntentBatch(
        input_ids=ids,
        attention_mask=mask,
        labels=torch.tensor([e.label for e in examples], dtype=torch.long),
        teacher_logits=logits,
        has_logits=torch.tensor([e.teacher_logits is not None for e in examples]),
        teacher_features=features,
        has_features=torch.tensor([e.teacher_features is not None for e in examples]),
    )


def check_intent_example(e: IntentExample, n_intents: int, feature_dim: int) -> str | None:
    """None when the example is usable, else what is wrong with it."""
    if not e.input_ids:
        return "empty input_ids"
    if not -1 <= e.label < n_intents:
        return f"label {e.label} outside [-1, {n_intents})"
    if e.teacher_logits is not None and len(e.teacher_logits) != n_intents:
        return f"{len(e.teacher_logits)} teacher logits for {n_intents} intents"
    if e.teacher_features is not None and len(e.teacher_features) != feature_dim:
        return f"{len(e.teacher_features)} teacher features, expected {feature_dim}"
    if e.label == -1 and e.teacher_logits is None and e.teacher_features is None:
        return "no label and no teacher output: nothing to learn from"
    return None


class EncoderStage:
    def __init__(
        self,
        student: Student,
        config: DistillConfig,
        examples: list[IntentExample],
        teacher_feature_dim: int,
        log_path: Path,
        checkpoint_dir: Path,
        dev: Sequence[IntentExample] = (),
        *,
        precision: Precision | None = None,
    ) -> None:
        """`dev`: labelled examples to stop early on (unlabelled ones are ignored); none: every
        epoch runs. `precision`: for the student's device (None: `precision_for` it)."""
        self.student = student
        self.config = config
        self.examples = examples
        self.dev = [e for e in dev if e.label >= 0]
        self.teacher_feature_dim = teacher_feature_dim
        self.log_path = Path(log_path)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = next(student.parameters()).device
        self.precision = precision or precision_for(self.device)
        check_precision(self.precision, self.device)
        self.scaler: torch.amp.GradScaler | None = None
        self.resumed_from: int | None = None
        self._ready = False

    def setup(self) -> None:
        cfg, scfg = self.config, self.student.cfg
        if not self.examples:
            raise ValueError("stage 1 needs at least one IntentExample")
        if cfg.max_source_tokens > scfg.enc_max_positions:
            raise ValueError(
                f"max_source_tokens={cfg.max_source_tokens} exceeds the student's "
                f"enc_max_positions={scfg.enc_max_positions}: lower it in the DistillConfig"
            )
        for i, example in enumerate(self.examples):
            problem = check_intent_example(example, scfg.n_intents, self.teacher_feature_dim)
            if problem:
                raise ValueError(f"IntentExample {i}: {problem}; fix the data building step")
        torch.manual_seed(cfg.seed)
        self.projection = nn.Linear(scfg.enc_hidden, self.teacher_feature_dim).to(self.device)
        self.weights = DynamicLossWeights(cfg.stage1_start_weights, enabled=cfg.dynamic_weights)
        for p in [*self.student.encoder.parameters(), *self.student.intent_head.parameters()]:
            p.requires_grad_(True)
        heads = [*self.student.intent_head.parameters(), *self.projection.parameters()]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": list(self.student.encoder.parameters()), "lr": cfg.stage1_lr},
                {"params": heads, "lr": cfg.stage1_head_lr},
            ],
            weight_decay=0.01,
        )
        self.spec = LoopSpec(
            stage=STAGE,
            n_examples=len(self.examples),
            batch_size=cfg.stage1_batch_size,
            epochs=cfg.stage1_epochs,
            seed=cfg.seed,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            max_seconds=None if cfg.stage1_max_minutes is None else cfg.stage1_max_minutes * 60,
            tiers=assign_tiers(self.examples, cfg.curriculum_tiers)
            if cfg.curriculum_tiers > 1
            else (),
            curriculum_epochs=cfg.curriculum_epochs,
        )
        factor = warmup_linear_decay(self.spec.total_steps, cfg.warmup_fraction)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = self.precision.grad_scaler()
        self.early = EarlyStopping(cfg.stage1_patience) if self.dev else None
        self.position = LoopPosition()
        latest = Checkpoint.latest(self.checkpoint_dir)
        if latest is not None:
            self._resume(Checkpoint.load(latest))
        self.logger = MetricsLogger(self.log_path)
        self.logger.log({"stage": STAGE, "event": "setup", "resumed_from": self.resumed_from})
        self._ready = True

    def _resume(self, ckpt: Checkpoint) -> None:
        check_resumable(ckpt, STAGE, self.config.to_json(), len(self.examples))
        saved = ckpt.extra.get("projection.weight")
        if saved is not None and saved.shape != self.projection.weight.shape:
            raise ValueError(
                f"the stage 1 checkpoint in {self.checkpoint_dir} learned from a teacher with "
                f"{saved.shape[0]} features, this run's has {self.teacher_feature_dim} (another "
                "encoder teacher): use a fresh work folder, or delete the old one's checkpoints"
            )
        self.student.load_state_dict(ckpt.model)
        self.projection.load_state_dict(
            {
                k[len("projection.") :]: v
                for k, v in ckpt.extra.items()
                if k.startswith("projection.")
            }
        )
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        if ckpt.loss_weights is not None:
            self.weights.load_state_dict(ckpt.loss_weights)
        if self.early is not None and "early_stopping" in ckpt.extra_meta:
            best = {
                k[len(_ES_PREFIX) :]: v for k, v in ckpt.extra.items() if k.startswith(_ES_PREFIX)
            }
            self.early.load_state_dict(ckpt.extra_meta["early_stopping"], best)
        if self.scaler is not None and ckpt.extra_meta.get("grad_scaler"):
            self.scaler.load_state_dict(ckpt.extra_meta["grad_scaler"])
        restore_rng(ckpt.rng)
        self.position = ckpt.position
        self.resumed_from = ckpt.position.step

    def _step(self, indices: list[int]) -> dict[str, float]:
        cfg = self.config
        batch = collate_intents(
            [self.examples[i] for i in indices],
            cfg.max_source_tokens,
            self.student.cfg.n_intents,
            self.teacher_feature_dim,
        )
        b = to_device(batch, self.device)
        self.student.train()
        self.projection.train()
        losses: dict[str, Tensor] = {}
        with self.precision.autocast():  # the losses compute in fp32 (they cast the logits up)
            _, pooled, logits = self.student.encode(b.input_ids, b.attention_mask)
            if bool(b.has_features.any()):
                f = b.has_features
                losses["feature"] = feature_mse(pooled[f], b.teacher_features[f], self.projection)
            if bool(b.has_logits.any()):
                h = b.has_logits
                losses["intent_kd"] = logit_kd(logits[h], b.teacher_logits[h], cfg.temperature)
            if bool((b.labels != -1).any()):
                losses["task_ce"] = task_ce(logits, b.labels, ignore_index=-1)
        weights = self.weights.weights
        total = torch.stack([weights[name] * loss for name, loss in losses.items()]).sum()
        grad_norm = optimizer_step(
            total, self.optimizer, self.scheduler, cfg.grad_clip, self.scaler
        )
        values = {name: float(loss.detach()) for name, loss in losses.items()}
        used = {f"w_{name}": w for name, w in weights.items()}
        self.weights.update(distributed.mean_metrics(values))  # same weights on every rank
        lr, head_lr = (float(x) for x in self.scheduler.get_last_lr())
        out = {"loss": float(total.detach()), **values, **used, "grad_norm": grad_norm}
        if self.scaler is not None:
            out["grad_scale"] = self.scaler.get_scale()
        return {**out, "lr": lr, "head_lr": head_lr}

    def _trained_state(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.student.state_dict().items() if k.startswith(_TRAINED)}

    @torch.no_grad()
    def dev_figures(self) -> tuple[float, float]:
        """The student's intent (accuracy, cross-entropy) on the dev examples, dropout off."""
        was_training = self.student.training
        self.student.eval()
        logits = []
        size = self.config.stage1_batch_size
        for start in range(0, len(self.dev), size):
            chunk = self.dev[start : start + size]
            ids, mask = pad(
                [truncate_source(e.input_ids, self.config.max_source_tokens) for e in chunk]
            )
            with self.precision.autocast():
                encoded = self.student.encode(ids.to(self.device), mask.to(self.device))
            logits.append(encoded[2].float().cpu())
        self.student.train(was_training)
        gold = torch.tensor([e.label for e in self.dev], dtype=torch.long)
        return accuracy_and_loss(torch.cat(logits), gold)

    def _epoch_end(self) -> bool:
        """Score the finished epoch on the dev examples; True once patience is exhausted."""
        assert self.early is not None
        accuracy, loss = self.dev_figures()
        self.early.update(self.position.epoch, accuracy, loss, self._trained_state)
        self.logger.log(
            {"stage": STAGE, "event": "dev", "epoch": self.position.epoch}
            | {"dev_accuracy": accuracy, "dev_loss": loss, "best_epoch": self.early.best_epoch}
        )
        return self.early.exhausted

    def train(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until all epochs are done, early stopping, `max_steps` steps of this call, or
        the time limit; always ends with a checkpoint (of the weights training reached), then,
        with dev examples, puts the best epoch's weights in the student. Returns the run's
        metrics."""
        if not self._ready:
            raise RuntimeError("call setup() before train()")
        epoch_end = self._epoch_end if self.early is not None else None
        metrics = run_epochs(
            self.position,
            self.spec,
            self._step,
            self.save_checkpoint,
            self.logger,
            max_steps,
            epoch_end,
        )
        self.save_checkpoint()
        metrics.update(resumed_from=self.resumed_from, loss_weights=dict(self.weights.weights))
        if self.early is not None and metrics["stop_reason"] != "max_steps":
            metrics["early_stopping"] = keep_best(
                self.early, self.student, self.position.batch_in_epoch > 0, self.dev_figures
            )
        self.logger.log({"event": "end", **metrics})
        return metrics

    def save_checkpoint(self) -> Path:
        extra = {f"projection.{k}": v for k, v in self.projection.state_dict().items()}
        extra["n_examples"] = torch.tensor(len(self.examples))
        extra_meta: dict[str, Any] = {}
        if self.early is not None:
            figures, best = self.early.state_dict()
            extra_meta["early_stopping"] = figures
            extra |= {_ES_PREFIX + k: v for k, v in best.items()}
        if self.scaler is not None:
            extra_meta["grad_scaler"] = self.scaler.state_dict()
        return Checkpoint(
            stage=STAGE,
            position=self.position.copy(),
            model=self.student.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            loss_weights=self.weights.state_dict(),
            extra=extra,
            config_json=self.config.to_json(),
            extra_meta=extra_meta,
        ).save(self.checkpoint_dir)

    def cleanup(self) -> None:
        if self._ready:
            self.logger.close()
            self._ready = False
