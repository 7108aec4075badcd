"""Evaluate an exported bundle on held-out rows through the serving runtime: what would serve,
measured the same way for the candidate and the champion.

Intent accuracy, macro-F1 and out-of-scope recall from the encoder graph; reply quality as chrF
of the served replies against the rows' reference replies (never against rated student replies:
those are the champion's own words) and the share of degenerate replies (`bundle_runtime.quality`);
the latency of one reply, batch 1 (median and p95 over the
decoded rows). The bundle runs on `bundle_runtime.OnnxStudent`, the decode loop that serves.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bundle_runtime.manifest import Manifest
from bundle_runtime.onnx_student import OnnxStudent, StudentReply
from bundle_runtime.quality import degenerate_counts
from distill_worker.data.loaders import Utterance
from distill_worker.stages.evaluate import corpus_chrf
from feedback.monitor import percentile


class BundleEvaluator:
    """One conversation at a time, as a customer meets the bundle (one ONNX Runtime thread)."""

    def __init__(self, bundle_dir: Path, *, precision: Literal["auto", "fp32", "int8"] = "auto"):
        self._student = OnnxStudent(bundle_dir, precision=precision)
        self.manifest: Manifest = self._student.manifest
        self.precision: str = self._student.precision

    def intent(self, turns: list[tuple[str, str]]) -> str:
        ids, mask = self._student.encode_texts([self._student.source_of(turns)])
        labels, _ = self._student.classify(ids, mask)
        return labels[0]

    def reply(self, turns: list[tuple[str, str]]) -> str:
        """The served reply's text for one conversation (batch 1, with the KV cache)."""
        return self._student.reply(turns).text

    def answer(self, turns: list[tuple[str, str]]) -> StudentReply:
        """The whole served reply (text, finish reason, intent, reward) of one conversation."""
        return self._student.reply(turns)


def evaluate_bundle(
    bundle_dir: Path, heldout: Sequence[Utterance], *, max_replies: int
) -> dict[str, Any]:
    """Figures of one bundle on the held-out rows (see the module docstring)."""
    model = BundleEvaluator(bundle_dir)
    labelled = [r for r in heldout if r.intent]
    gold = [r.intent or "" for r in labelled]
    predicted = [model.intent(r.turns()) for r in labelled]
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    oos = model.manifest.oos_label
    oos_gold = [p for p, g in zip(predicted, gold, strict=True) if oos is not None and g == oos]
    # References only: replies that operators wrote or corrected, or that came with a seed
    # corpus. A rated reply of the student is the champion's own output; scoring against it
    # would favour the champion over any candidate.
    with_reply = [r for r in heldout if r.reply and r.reward is None][:max_replies]
    answers: list[StudentReply] = []
    times: list[float] = []
    for row in with_reply or list(heldout)[: min(max_replies, 4)]:
        started = time.perf_counter()
        answers.append(model.answer(row.turns()))
        times.append((time.perf_counter() - started) * 1000.0)
    hyps = [a.text for a in answers]
    degenerate = degenerate_counts((a.text, a.finish_reason) for a in answers)
    refs = [r.reply or "" for r in with_reply]
    ordered = sorted(times)
    return {
        "model_version": model.manifest.model_version,
        "precision": model.precision,
        "rows": len(labelled),
        "intent_accuracy": correct / len(labelled) if labelled else None,
        "oos_rows": len(oos_gold),
        "oos_recall": (sum(p == oos for p in oos_gold) / len(oos_gold)) if oos_gold else None,
        "reply_rows": len(refs),
        "reply_chrf": round(corpus_chrf(hyps, refs), 3) if refs else None,
        "decoded_rows": degenerate["rows"],
        "degenerate_share": (
            round(degenerate["degenerate"] / degenerate["rows"], 4) if degenerate["rows"] else None
        ),
        "degenerate": {k: v for k, v in degenerate.items() if k != "rows"},
        "latency_median_ms": round(statistics.median(times), 3) if times else None,
        "latency_p95_ms": round(percentile(ordered, 0.95) or 0.0, 3) if times else None,
    }
