"""Scoring of `bench/intents.py`, the same for every model: logits put in the data set's label
order, the temperature and handoff threshold fitted on the calibration rows, dev metrics as
served (handoff applied, on the pipeline's handoff score) and the out-of-scope AUROC; and the
TF-IDF + logistic regression baseline, whose decision function gives the logits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from torch import Tensor

from bench.intent_data import DataSet
from bundle_runtime.handoff_score import intent_scores
from bundle_runtime.intents import as_served
from distill_worker.data.loaders import Utterance
from distill_worker.run_config import DEFAULT_HANDOFF_PRECISION, DEFAULT_OOS_PRIOR, RunConfig
from distill_worker.stages.calibrate import (
    HandoffCalibration,
    calibrate_logits,
    fit_temperature,
)
from distill_worker.stages.evaluate import intent_metrics
from distill_worker.stages.reward_eval import roc_auc


@dataclass(frozen=True)
class Calibration:
    """What is fitted on the calibration rows: the intent temperature, the handoff threshold."""

    temperature: float
    handoff: HandoffCalibration


@dataclass(frozen=True)
class Logits:
    """One model's intent logits, columns in the data set's label order."""

    calibration: Tensor
    dev: Tensor


def in_label_order(logits: Tensor, model_labels: Sequence[str], labels: list[str]) -> Tensor:
    """Columns rearranged into `labels` order; an intent the model does not know gets -inf
    (never predicted), so every model is scored against the same label indices."""
    out = torch.full((logits.shape[0], len(labels)), -math.inf)
    column = {label: i for i, label in enumerate(model_labels)}
    known = [(j, column[label]) for j, label in enumerate(labels) if label in column]
    out[:, [j for j, _ in known]] = logits[:, [i for _, i in known]].float()
    return out


def calibrate(logits: Tensor, data: DataSet) -> Calibration:
    """Temperature, then the handoff threshold (the pipeline's defaults: its score choice and
    pseudo-out-of-scope rows where the data has few negatives), on the calibration rows only."""
    gold = data.gold(data.calibration)
    temperature = fit_temperature(logits, torch.tensor(gold))
    scaled = logits / temperature
    in_scope = [i for i, g in enumerate(gold) if g != data.oos]
    negative = [i for i, g in enumerate(gold) if g == data.oos]
    handoff = calibrate_logits(
        scaled[in_scope],
        [gold[i] for i in in_scope],
        scaled[negative] if negative else None,
        oos=data.oos,
        score=RunConfig.model_fields["handoff_score"].default,
        target_precision=DEFAULT_HANDOFF_PRECISION,
        oos_prior=DEFAULT_OOS_PRIOR,
    )
    return Calibration(temperature, handoff)


def report(logits: Tensor, calibration: Calibration, data: DataSet) -> dict[str, Any]:
    """Dev metrics as served: the calibrated temperature and threshold, the handoff applied
    (a handed-off message counts as predicted `oos` where the data has out-of-scope rows)."""
    gold = data.gold(data.dev)
    scaled = logits / calibration.temperature
    pred, _, values = intent_scores(scaled.double().numpy(), calibration.handoff.score, data.oos)
    counts_as_oos = data.oos if data.oos in gold else None
    served, handoff = as_served(
        pred,
        values,
        gold,
        threshold=calibration.handoff.threshold,
        oos=data.oos,
        counts_as_oos=counts_as_oos,
    )
    metrics: dict[str, Any] = dict(intent_metrics(served, gold, data.labels, data.oos_label))
    metrics["temperature"] = round(calibration.temperature, 4)
    metrics["handoff"] = {**handoff, "calibration": calibration.handoff.as_dict()}
    if counts_as_oos is not None:
        metrics["oos_auroc"] = oos_auroc(scaled, gold, counts_as_oos)
    return metrics


def oos_auroc(scaled: Tensor, gold: list[int], oos: int) -> dict[str, float]:
    """AUROC of in-scope (positive) vs out-of-scope dev rows for two scores of the logits / T:
    max-softmax (the top in-scope intent's probability, the `oos` class keeping its share of
    the mass) and negative energy (logsumexp of the in-scope logits). Neither scores the `oos`
    column itself: with it a row the model confidently calls `oos` would look in scope."""
    keep = [c for c in range(scaled.shape[1]) if c != oos]
    max_softmax = torch.softmax(scaled, dim=-1)[:, keep].max(dim=-1).values
    negative_energy = torch.logsumexp(scaled[:, keep], dim=-1)
    positive = [float(g != oos) for g in gold]
    return {
        "max_softmax": round(roc_auc(max_softmax.tolist(), positive), 4),
        "energy": round(roc_auc(negative_energy.tolist(), positive), 4),
    }


def scored(logits: Logits, data: DataSet) -> tuple[dict[str, Any], Calibration]:
    """Calibrate on the calibration logits, report on the dev logits."""
    calibration = calibrate(logits.calibration, data)
    return report(logits.dev, calibration, data), calibration


# ---------------------------------------------------------------------------------- TF-IDF


def tfidf_logits(model: Pipeline, rows: list[Utterance], labels: list[str]) -> Tensor:
    """The logistic regression's decision function: its logits (softmax = predict_proba)."""
    scores = torch.tensor(np.asarray(model.decision_function([r.text for r in rows])))
    return in_label_order(scores, [str(c) for c in model.classes_], labels)
