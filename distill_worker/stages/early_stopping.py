"""Early stopping on a dev split: the best epoch so far, its weights, and when to stop.

Used by the encoder teacher's fine-tuning (`teacher/encoder.py`), stage 1
(`stages/encoder_stage.py`) and stage 2 (`stages/decoder_stage.py`). After each epoch the trainer
scores the dev rows (the run's calibration half of the held-out split, never the rows it reports
on) and calls `update`: an epoch is better when its intent accuracy is higher, or equal with a
lower cross-entropy (on a few hundred rows accuracy ties often; the loss still moves). Stage 2
has no accuracy (`loss_only`): a lower reply cross-entropy is better. After `patience` epochs
in a row without a better one, `exhausted` says stop; the trainer then puts `best_weights` back. The
state (figures and weights) goes into a stage checkpoint, so a resumed run decides as an
uninterrupted one would. Nothing here reads a clock: the same data and seed stop at the same
epoch on any machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class EarlyStopping:
    patience: int
    best_epoch: int = 0  # 0: no epoch scored yet
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    bad_epochs: int = 0  # epochs in a row without a better one
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, dev_accuracy, dev_loss
    best_weights: dict[str, Tensor] = field(default_factory=dict)
    loss_only: bool = False  # the accuracy passed is ignored; reports leave it out

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def better(self, accuracy: float, loss: float) -> bool:
        """Whether these dev figures beat the best epoch's."""
        if self.loss_only:
            return loss < self.best_loss
        return accuracy > self.best_accuracy or (
            accuracy == self.best_accuracy and loss < self.best_loss
        )

    def update(
        self, epoch: int, accuracy: float, loss: float, weights: Callable[[], dict[str, Tensor]]
    ) -> bool:
        """Record an epoch's dev figures; a better epoch keeps a copy of `weights()`. -> whether
        it was better."""
        entry = {"epoch": epoch, "dev_accuracy": round(accuracy, 6), "dev_loss": round(loss, 6)}
        if self.loss_only:
            del entry["dev_accuracy"]
        self.history.append(entry)
        if not self.better(accuracy, loss):
            self.bad_epochs += 1
            return False
        self.best_epoch, self.best_accuracy, self.best_loss = epoch, accuracy, loss
        self.bad_epochs = 0
        self.best_weights = {k: v.detach().clone() for k, v in weights().items()}
        return True

    @property
    def exhausted(self) -> bool:
        return self.bad_epochs >= self.patience

    def report(self) -> dict[str, Any]:
        """The figures for the run's metrics (no weights)."""
        name, value = (
            ("best_dev_loss", self.best_loss) if self.loss_only
            else ("best_dev_accuracy", self.best_accuracy)
        )  # fmt: skip
        best: dict[str, float | None] = {name: round(value, 6) if self.best_epoch else None}
        return {
            "patience": self.patience,
            "best_epoch": self.best_epoch or None,
            **best,
            "dev_history": list(self.history),
        }

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """(JSON-ready figures, the best weights) for a checkpoint."""
        figures = {
            "best_epoch": self.best_epoch,
            "best_accuracy": self.best_accuracy,
            "best_loss": self.best_loss if self.best_epoch else None,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
        }
        return figures, dict(self.best_weights)

    def load_state_dict(self, figures: dict[str, Any], weights: dict[str, Tensor]) -> None:
        self.best_epoch = int(figures["best_epoch"])
        self.best_accuracy = float(figures["best_accuracy"])
        loss = figures.get("best_loss")
        self.best_loss = float("inf") if loss is None else float(loss)
        self.bad_epochs = int(figures["bad_epochs"])
        self.history = [dict(h) for h in figures["history"]]
        self.best_weights = dict(weights)


def accuracy_and_loss(logits: Tensor, gold: Tensor) -> tuple[float, float]:
    """logits [N,C], gold [N] -> (accuracy, mean cross-entropy)."""
    if logits.shape[0] == 0:
        return 0.0, float("inf")
    accuracy = float((logits.argmax(-1) == gold).float().mean())
    loss = float(torch.nn.functional.cross_entropy(logits.float(), gold))
    return accuracy, loss


def keep_best(
    early: EarlyStopping,
    model: torch.nn.Module,
    partial_epoch: bool,
    score: Callable[[], tuple[float, float]],
) -> dict[str, Any]:
    """At the end of training: put the best scored weights in `model` (the best epoch's, or the
    weights a time cap stopped at part-way through an epoch, scored now with `score()`, when
    they are better). -> the report for the run's metrics, with what was `kept`."""
    report = early.report()
    if partial_epoch or not early.best_weights:
        accuracy, loss = score()  # a partial epoch (time cap), not recorded
        report["partial_epoch"] = {"dev_loss": round(loss, 6)}
        if not early.loss_only:
            report["partial_epoch"]["dev_accuracy"] = round(accuracy, 6)
        if not early.best_weights or early.better(accuracy, loss):
            report["kept"] = "partial_epoch"
            return report
    model.load_state_dict(early.best_weights, strict=False)
    report["kept"] = f"epoch {early.best_epoch}"
    return report
