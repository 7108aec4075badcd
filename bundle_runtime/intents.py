"""Intent metrics of an exported bundle on labelled rows, through the serving runtime.

Accuracy, macro-F1 over the intents present in the data, and, when the data has the `oos`
label, out-of-scope recall and precision, with the bundle's handoff applied as served: a message
whose handoff score (`bundle_runtime.handoff_score`) is under the bundle's threshold counts as
predicted out-of-scope. The share of
messages handed off and the accuracy of the ones answered are reported in every case. Rows
whose intent the bundle does not know count as errors (the bundle cannot predict them) and are
reported.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from bundle_runtime.onnx_student import OnnxStudent
from bundle_runtime.source import format_source

OOS = "oos"
T = TypeVar("T")


class LabelledRow(Protocol):
    @property
    def intent(self) -> str | None: ...

    def turns(self) -> list[tuple[str, str]]: ...


def evaluate_intents(
    bundle_dir: Path,
    rows: Sequence[LabelledRow],
    *,
    precision: str = "auto",
    batch_size: int = 64,
) -> dict[str, Any]:
    prec: Literal["auto", "fp32", "int8"] = (
        "fp32" if precision == "fp32" else "int8" if precision == "int8" else "auto"
    )
    student = OnnxStudent(bundle_dir, precision=prec)
    labelled = [r for r in rows if r.intent]
    if not labelled:
        raise ValueError("the data has no intent labels to evaluate against")
    context_turns = student.manifest.context_turns
    predicted: list[str] = []
    confidences: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(labelled), batch_size):
        chunk = labelled[start : start + batch_size]
        ids, mask = student.encode_texts([format_source(r.turns(), context_turns) for r in chunk])
        labels, _, values = student.intents(student.intent_logits(ids, mask))
        predicted.extend(labels)
        confidences.extend(values)
    elapsed = time.perf_counter() - started
    gold = [r.intent or "" for r in labelled]
    served, handoff = as_served(
        predicted,
        confidences,
        gold,
        threshold=student.handoff_threshold,
        oos=student.manifest.oos_label,
        counts_as_oos=OOS if OOS in gold else None,
    )
    return {
        "bundle": student.model_version,
        "precision": student.precision,
        "rows": len(gold),
        "unknown_intents": sorted(set(gold) - set(student.manifest.intent_labels)),
        **scores(served, gold),
        "handoff": {**handoff, "score": student.handoff_score},
        # The classifier alone, every row answered: what the handoff is weighed against.
        "classifier_accuracy": sum(p == g for p, g in zip(predicted, gold, strict=True))
        / len(gold),
        "ms_per_row": round(1000 * elapsed / len(gold), 3),
    }


def as_served(
    predicted: Sequence[T],
    confidence: Sequence[float],
    gold: Sequence[T],
    *,
    threshold: float,
    oos: T | None,
    counts_as_oos: T | None,
) -> tuple[list[T], dict[str, float | None]]:
    """The predictions with the handoff applied as serving applies it, and the handoff figures.

    A message is handed off when its predicted intent is `oos` or its handoff score
    (`confidence`: the probability or the energy, as the threshold is) is under `threshold`.
    With `counts_as_oos` (the data's out-of-scope label; None when the data has no out-of-scope
    rows), a handed-off message counts as predicted out-of-scope, the CLINC150 protocol;
    without, the predictions stay the classifier's and only the figures show the handoff: its
    threshold, the share handed off, and the accuracy of the messages answered.
    """
    off = [p == oos or c < threshold for p, c in zip(predicted, confidence, strict=True)]
    served = [
        counts_as_oos if o and counts_as_oos is not None else p
        for p, o in zip(predicted, off, strict=True)
    ]
    answered = [p == g for p, g, o in zip(predicted, gold, off, strict=True) if not o]
    return served, {
        "threshold": round(threshold, 4),
        "share": round(sum(off) / len(off), 4) if off else None,
        "answered_accuracy": round(sum(answered) / len(answered), 4) if answered else None,
    }


def scores(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float | None]:
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    true_pos: Counter[str] = Counter()
    pred_count: Counter[str] = Counter(predicted)
    gold_count: Counter[str] = Counter(gold)
    for p, g in zip(predicted, gold, strict=True):
        if p == g:
            true_pos[g] += 1
    f1s = []
    for label in gold_count:
        precision = true_pos[label] / pred_count[label] if pred_count[label] else 0.0
        recall = true_pos[label] / gold_count[label]
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    out: dict[str, float | None] = {
        "accuracy": correct / len(gold),
        "macro_f1": sum(f1s) / len(f1s),
    }
    if OOS in gold_count:
        out["oos_recall"] = true_pos[OOS] / gold_count[OOS]
        out["oos_precision"] = true_pos[OOS] / pred_count[OOS] if pred_count[OOS] else None
        in_scope = [(p, g) for p, g in zip(predicted, gold, strict=True) if g != OOS]
        out["in_scope_accuracy"] = (
            sum(p == g for p, g in in_scope) / len(in_scope) if in_scope else None
        )
    return out
