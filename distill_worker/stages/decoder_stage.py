"""Stage 2: train the student's decoder jointly with its reward head.

Objectives per batch [coefficient]:
- `seq_ce` [seq_kd_weight]: token CE on teacher replies and corrections, example i counting
  `weight_i` (under "kto", rated-bad replies get 0: KTO pushes them down instead of imitating);
- `token_kd` [token_kd_weight]: KL to the responder's top-k where `teacher_topk` is present
  (`teacher_topk[t]` predicts target t = reply[t]; an entry t = len(reply) predicts EOS);
- `reward_bce` [reward_weight]: the reward head on examples with a `reward_label`;
- `kto` [reward_weight], "kto" only: KTO on the log-likelihood of rated replies against the
  student as `setup()` found it (computed once, dropout off, kept in the checkpoint).
Encoder frozen (requires_grad False, eval mode) when `stage2_encoder_lr` is 0, else trained at
that LR. The intent head is never trained here.

With `dev` replies (held-out references), each epoch ends with their token cross-entropy (the
same `seq_ce`, dropout off); after `stage2_patience` epochs without a lower one training stops
and the best epoch's weights are put back (`stages.early_stopping`, state in the checkpoint).

Device and precision: as in stage 1 (`encoder_stage`): where the student's parameters are, the
forward passes, the losses (fp32 inside) and the KTO reference under `precision.autocast()`, fp16
steps through its `GradScaler` (state in the checkpoint); fp32 on the CPU by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from distill_worker import distributed
from distill_worker.config import DistillConfig
from distill_worker.data.examples import ReplyExample
from distill_worker.devices import Precision, precision_for
from distill_worker.model.student import Student
from distill_worker.stages.early_stopping import EarlyStopping, keep_best
from distill_worker.stages.losses import (
    kto_loss,
    reward_bce,
    sequence_ce,
    sequence_logprob,
    token_kd_topk,
)
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

STAGE = "stage2_decoder_reward"
_ES_PREFIX = "early_stopping."


@dataclass
class ReplyBatch:
    input_ids: Tensor  # [B,S]
    attention_mask: Tensor  # [B,S]
    decoder_input_ids: Tensor  # [B,T] = [BOS] + reply, padded
    decoder_mask: Tensor  # [B,T]
    targets: Tensor  # [B,T] = reply + [EOS], padded (mask = decoder_mask)
    weights: Tensor  # [B]
    reward_labels: Tensor  # [B], 0 where unlabelled
    has_reward: Tensor  # [B] bool
    top_ids: Tensor | None  # [B,T,k] teacher top-k ids aligned with targets
    top_logprobs: Tensor | None  # [B,T,k], -inf in padding slots
    topk_mask: Tensor | None  # [B,T]


def collate_replies(
    examples: list[ReplyExample], max_source: int, max_reply: int, bos: int, eos: int, pad_id: int
) -> ReplyBatch:
    ids, mask = pad([truncate_source(e.input_ids, max_source) for e in examples])
    replies = [e.reply_ids[:max_reply] for e in examples]
    dec_in, dec_mask = pad([[bos, *r] for r in replies], pad_id)
    targets, _ = pad([[*r, eos] for r in replies], pad_id)
    top_ids = top_logprobs = topk_mask = None
    if any(e.teacher_topk for e in examples):
        k = max(len(slot) for e in examples for slot, _ in e.teacher_topk or [])
        top_ids = torch.zeros((*targets.shape, k), dtype=torch.long)
        top_logprobs = torch.full((*targets.shape, k), -math.inf)
        topk_mask = torch.zeros(targets.shape, dtype=torch.long)
        for i, e in enumerate(examples):
            for t, (slot, logprobs) in enumerate((e.teacher_topk or [])[: len(replies[i]) + 1]):
                top_ids[i, t, : len(slot)] = torch.tensor(slot, dtype=torch.long)
                top_logprobs[i, t, : len(slot)] = torch.tensor(logprobs)
                topk_mask[i, t] = 1
    labels = [e.reward_label for e in examples]
    return ReplyBatch(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=dec_in,
        decoder_mask=dec_mask,
        targets=targets,
        weights=torch.tensor([e.weight for e in examples], dtype=torch.float),
        reward_labels=torch.tensor([x or 0.0 for x in labels], dtype=torch.float),
        has_reward=torch.tensor([x is not None for x in labels]),
        top_ids=top_ids,
        top_logprobs=top_logprobs,
        topk_mask=topk_mask,
    )


def check_reply_example(e: ReplyExample, vocab: int) -> str | None:
    """None when the example is usable, else what is wrong with it."""
    if not e.input_ids:
        return "empty input_ids"
    if any(not 0 <= t < vocab for t in e.reply_ids):
        return f"reply token outside the decoder vocabulary [0, {vocab})"
    if not (math.isfinite(e.weight) and e.weight >= 0):
        return f"weight {e.weight} must be finite and >= 0"
    if e.reward_label is not None and not 0.0 <= e.reward_label <= 1.0:
        return f"reward_label {e.reward_label} outside [0, 1]"
    for slot, logprobs in e.teacher_topk or []:
        if len(slot) != len(logprobs) or not slot:
            return "teacher_topk entries need as many log-probs as ids, and at least one"
        if any(not 0 <= t < vocab for t in slot):
            return f"teacher_topk id outside the decoder vocabulary [0, {vocab})"
    return None


class DecoderStage:
    def __init__(
        self,
        student: Student,
        config: DistillConfig,
        examples: list[ReplyExample],
        log_path: Path,
        checkpoint_dir: Path,
        *,
        precision: Precision | None = None,
        dev: Sequence[ReplyExample] = (),
    ) -> None:
        """`precision`: for the student's device (None: `precision_for` it). `dev`: held-out
        replies to stop early on (those with weight 0 are ignored); none: every epoch runs."""
        self.student = student
        self.config = config
        self.examples = examples
        self.dev = [e for e in dev if e.weight > 0]
        self.log_path = Path(log_path)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = next(student.parameters()).device
        self.precision = precision or precision_for(self.device)
        check_precision(self.precision, self.device)
        self.scaler: torch.amp.GradScaler | None = None
        self.frozen_encoder = config.stage2_encoder_lr == 0
        self.kto = config.reward_objective == "kto"
        self.reference = torch.empty(0)  # [N] reference log p(reply), set in setup() under "kto"
        self.resumed_from: int | None = None
        self._ready = False

    def setup(self) -> None:
        cfg, scfg = self.config, self.student.cfg
        if not self.examples:
            raise ValueError("stage 2 needs at least one ReplyExample")
        if cfg.max_source_tokens > scfg.enc_max_positions:
            raise ValueError("max_source_tokens exceeds the student's enc_max_positions")
        if cfg.max_reply_tokens < 1:
            raise ValueError(
                "max_reply_tokens is 0 (from the data): the pipeline resolves it "
                "(distill_worker.data.reply_length); set it for a stage run on its own"
            )
        if cfg.max_reply_tokens + 1 > scfg.dec_max_positions:
            raise ValueError(
                f"max_reply_tokens + 1 (BOS) = {cfg.max_reply_tokens + 1} exceeds the student's "
                f"dec_max_positions={scfg.dec_max_positions}: lower max_reply_tokens"
            )
        for i, example in enumerate([*self.examples, *self.dev]):
            problem = check_reply_example(example, scfg.dec_vocab_size)
            if problem:
                raise ValueError(f"ReplyExample {i}: {problem}; fix the data building step")
        torch.manual_seed(cfg.seed)
        for p in self.student.encoder.parameters():
            p.requires_grad_(not self.frozen_encoder)
        for p in self.student.intent_head.parameters():
            p.requires_grad_(False)
        trained = [*self.student.decoder.parameters(), *self.student.reward_head.parameters()]
        groups: list[dict[str, Any]] = [{"params": trained, "lr": cfg.stage2_lr}]
        if not self.frozen_encoder:
            encoder = list(self.student.encoder.parameters())
            groups.append({"params": encoder, "lr": cfg.stage2_encoder_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
        self.spec = LoopSpec(
            stage=STAGE,
            n_examples=len(self.examples),
            batch_size=cfg.stage2_batch_size,
            epochs=cfg.stage2_epochs,
            seed=cfg.seed,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            max_seconds=None if cfg.stage2_max_minutes is None else cfg.stage2_max_minutes * 60,
        )
        factor = warmup_linear_decay(self.spec.total_steps, cfg.warmup_fraction)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = self.precision.grad_scaler()
        self.early = EarlyStopping(cfg.stage2_patience, loss_only=True) if self.dev else None
        self.position = LoopPosition()
        latest = Checkpoint.latest(self.checkpoint_dir)
        if latest is not None:
            self._resume(Checkpoint.load(latest))
        elif self.kto:
            self.reference = self._reference_logprobs()
        self.logger = MetricsLogger(self.log_path)
        self.logger.log({"stage": STAGE, "event": "setup", "resumed_from": self.resumed_from})
        self._ready = True

    def _batch(self, indices: list[int]) -> ReplyBatch:
        return self._collate([self.examples[i] for i in indices])

    def _collate(self, examples: list[ReplyExample]) -> ReplyBatch:
        cfg, s = self.config, self.student.cfg
        special = (s.dec_bos_id, s.dec_eos_id, s.dec_pad_id)
        batch = collate_replies(examples, cfg.max_source_tokens, cfg.max_reply_tokens, *special)
        return to_device(batch, self.device)

    @torch.no_grad()
    def _reference_logprobs(self) -> Tensor:
        """log p(reply | context) under the student as it is now, dropout off; NaN for rows
        without a reward label. [N]"""
        out = torch.full((len(self.examples),), math.nan)
        rated = [i for i, e in enumerate(self.examples) if e.reward_label is not None]
        self.student.eval()
        for start in range(0, len(rated), self.config.stage2_batch_size):
            rows = rated[start : start + self.config.stage2_batch_size]
            b = self._batch(rows)
            with self.precision.autocast():
                logits = self.student(
                    b.input_ids, b.attention_mask, b.decoder_input_ids, b.decoder_mask
                )["logits"]
                logp = sequence_logprob(logits, b.targets, b.decoder_mask)
            out[rows] = logp.float().cpu()
        return out

    def _resume(self, ckpt: Checkpoint) -> None:
        check_resumable(ckpt, STAGE, self.config.to_json(), len(self.examples))
        self.student.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        if self.kto:
            self.reference = ckpt.extra["reference_logps"]
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
        b = self._batch(indices)
        self.student.train()
        if self.frozen_encoder:
            self.student.encoder.eval()
        with self.precision.autocast():  # the losses compute in fp32 (they cast the logits up)
            out = self.student(b.input_ids, b.attention_mask, b.decoder_input_ids, b.decoder_mask)
            terms = self._terms(indices, b, out)
            logits = out["logits"]
            # under torchrun: each term weighted by this shard's share of its units (tokens,
            # labelled rows), so the step is the whole batch's (1.0 in one process)
            factors, means = distributed.unit_means(
                {
                    name: (float(terms[name][1].detach()) if name in terms else 0.0, count)
                    for name, count in _units(b).items()
                    if self._coefficient(name) > 0 and (name != "kto" or self.kto)
                }
            )
            total = logits.float().sum() * 0.0 + sum(
                w * factors[name] * loss for name, (w, loss) in terms.items()
            )
        grad_norm = optimizer_step(
            total, self.optimizer, self.scheduler, cfg.grad_clip, self.scaler
        )
        lr = float(self.scheduler.get_last_lr()[0])
        extra = {} if self.scaler is None else {"grad_scale": self.scaler.get_scale()}
        if distributed.current() is None:
            values = {name: float(loss.detach()) for name, (_, loss) in terms.items()}
            loss_value = float(total.detach())
        else:  # the whole batch's means, the same on every rank
            values = {name: means[name] for name in _UNITS if name in means}
            loss_value = sum(self._coefficient(name) * value for name, value in values.items())
        return {"loss": loss_value, **values, "grad_norm": grad_norm, "lr": lr, **extra}

    def _coefficient(self, name: str) -> float:
        """An objective's weight in the stage-2 loss (the config field in the module docstring)."""
        cfg = self.config
        weights = {
            "seq_ce": cfg.seq_kd_weight,
            "token_kd": cfg.token_kd_weight,
            "reward_bce": cfg.reward_weight,
            "kto": cfg.reward_weight,
        }
        return weights[name]

    def _terms(
        self, indices: list[int], b: ReplyBatch, out: dict[str, Tensor]
    ) -> dict[str, tuple[float, Tensor]]:
        """The batch's objectives: name -> (coefficient, scalar loss)."""
        cfg = self.config
        logits, mask = out["logits"], b.decoder_mask
        terms: dict[str, tuple[float, Tensor]] = {}
        weights = b.weights
        if self.kto:  # rated-bad replies are pushed down by KTO, not imitated
            weights = weights * ~(b.has_reward & (b.reward_labels < 0.5))
        coefficient = self._coefficient
        if coefficient("seq_ce") > 0:
            terms["seq_ce"] = (
                coefficient("seq_ce"),
                sequence_ce(logits, b.targets, mask, weights),
            )
        top = (b.top_ids, b.top_logprobs, b.topk_mask)
        if (
            coefficient("token_kd") > 0
            and top[0] is not None
            and top[1] is not None
            and top[2] is not None
        ):
            kd = token_kd_topk(logits, top[0], top[1], top[2] * mask)
            terms["token_kd"] = (coefficient("token_kd"), kd)
        if coefficient("reward_bce") > 0 and bool(b.has_reward.any()):
            bce = reward_bce(out["reward"], b.reward_labels, b.has_reward)
            terms["reward_bce"] = (coefficient("reward_bce"), bce)
            if self.kto:
                policy = sequence_logprob(logits, b.targets, mask)
                reference = self.reference[indices].to(self.device)
                desirable = b.reward_labels >= 0.5
                kto = kto_loss(policy, reference, desirable, b.has_reward, cfg.kto_beta)
                terms["kto"] = (coefficient("kto"), kto)
        return terms

    def _trained_state(self) -> dict[str, Tensor]:
        trained = ("decoder.", "reward_head.") + (() if self.frozen_encoder else ("encoder.",))
        return {k: v for k, v in self.student.state_dict().items() if k.startswith(trained)}

    @torch.no_grad()
    def dev_loss(self) -> float:
        """Token cross-entropy of the dev replies (each counting its weight), dropout off."""
        was_training = self.student.training
        self.student.eval()
        total = tokens = 0.0
        size = self.config.stage2_batch_size
        for start in range(0, len(self.dev), size):
            chunk = self.dev[start : start + size]
            b = self._collate(chunk)
            with self.precision.autocast():
                logits = self.student(
                    b.input_ids, b.attention_mask, b.decoder_input_ids, b.decoder_mask
                )["logits"]
                n = float(b.decoder_mask.sum())
                total += float(sequence_ce(logits, b.targets, b.decoder_mask, b.weights)) * n
            tokens += n
        self.student.train(was_training)
        return total / max(tokens, 1.0)

    def _epoch_end(self) -> bool:
        """Score the finished epoch on the dev replies; True once patience is exhausted."""
        assert self.early is not None
        loss = self.dev_loss()
        self.early.update(self.position.epoch, 0.0, loss, self._trained_state)
        self.logger.log(
            {"stage": STAGE, "event": "dev", "epoch": self.position.epoch}
            | {"dev_loss": loss, "best_epoch": self.early.best_epoch}
        )
        return self.early.exhausted

    def train(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until all epochs are done, early stopping, `max_steps` steps of this call, or
        the time limit; always ends with a checkpoint (of the weights training reached), then,
        with dev replies, puts the best epoch's weights in the student. Returns the run's
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
        metrics.update(resumed_from=self.resumed_from, encoder_frozen=self.frozen_encoder)
        metrics["dev_replies"] = len(self.dev)
        if self.early is not None and metrics["stop_reason"] != "max_steps":
            metrics["early_stopping"] = keep_best(
                self.early,
                self.student,
                self.position.batch_in_epoch > 0,
                lambda: (0.0, self.dev_loss()),
            )
        self.logger.log({"event": "end", **metrics})
        return metrics

    def save_checkpoint(self) -> Path:
        extra = {"n_examples": torch.tensor(len(self.examples))}
        if self.kto:
            extra["reference_logps"] = self.reference
        extra_meta: dict[str, Any] = {}
        if self.scaler is not None:
            extra_meta["grad_scaler"] = self.scaler.state_dict()
        if self.early is not None:
            figures, best = self.early.state_dict()
            extra_meta["early_stopping"] = figures
            extra |= {_ES_PREFIX + k: v for k, v in best.items()}
        return Checkpoint(
            stage=STAGE,
            position=self.position.copy(),
            model=self.student.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            extra=extra,
            config_json=self.config.to_json(),
            extra_meta=extra_meta,
        ).save(self.checkpoint_dir)

    def cleanup(self) -> None:
        """Close the log and give the student back with every parameter trainable."""
        if self._ready:
            self.logger.close()
            self._ready = False
        for p in self.student.parameters():
            p.requires_grad_(True)


_UNITS = ("seq_ce", "token_kd", "reward_bce", "kto")


def _units(b: ReplyBatch) -> dict[str, float]:
    """What each stage-2 objective averages over, in this batch: target tokens (`seq_ce`),
    positions with the teacher's top-k (`token_kd`), rows with a reward label (`reward_bce`,
    `kto`; KTO's reference point is still the shard's own batch estimate). The denominators of
    `stages.losses`, counted for `distributed.unit_means`."""
    tokens = float(b.decoder_mask.sum())
    topk = 0.0
    if b.top_logprobs is not None and b.topk_mask is not None:
        has_slot = torch.isfinite(b.top_logprobs).any(dim=-1)
        topk = float((b.topk_mask * b.decoder_mask * has_slot).sum())
    rated = float(b.has_reward.sum())
    return {"seq_ce": tokens, "token_kd": topk, "reward_bce": rated, "kto": rated}
