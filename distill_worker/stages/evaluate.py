"""Evaluation: intent metrics, reply quality (chrF, ROUGE-L), student helpers, latency.

- `intent_metrics`: accuracy, macro-F1 over the classes present in gold, out-of-scope recall and
  precision, in-scope accuracy.
- `chrf` / `corpus_chrf`: character n-gram F-score (Popovic, 2015) as sacreBLEU computes it by
  default: whitespace removed, n = 1..N, precision and recall averaged over the orders that both
  strings are long enough for, then F-beta of the averages; scaled 0..100. `corpus_chrf` sums the
  n-gram statistics over the corpus before scoring.
- `rouge_l`: F1 of the longest common subsequence over whitespace tokens, 0..1.
- `predict_intents`, `generate_replies`: the student in eval mode, without gradients.
- `measure_latency`, `reply_latency`: median / p95 milliseconds per call after warmup.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from bundle_runtime.decoding import Decoding
from distill_worker.model.student import Student
from distill_worker.stages.training import pad


def intent_metrics(
    pred: list[int], gold: list[int], labels: list[str], oos_label: str | None = None
) -> dict[str, float | None]:
    """Metrics over parallel lists of label indices. OOS values are None when undefined (no OOS
    in gold for recall, none predicted for precision); in-scope accuracy is over gold != OOS."""
    if len(pred) != len(gold) or not gold:
        raise ValueError("pred and gold must be non-empty lists of the same length")
    correct = [p == g for p, g in zip(pred, gold, strict=True)]
    f1s = []
    for c in sorted(set(gold)):
        tp = sum(p == c and g == c for p, g in zip(pred, gold, strict=True))
        n_pred, n_gold = pred.count(c), gold.count(c)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold
        f1s.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    out: dict[str, float | None] = {
        "accuracy": sum(correct) / len(gold),
        "macro_f1": sum(f1s) / len(f1s),
    }
    oos = None
    if oos_label is not None:
        if oos_label not in labels:
            raise ValueError(f"oos_label {oos_label!r} is not one of the intent labels")
        oos = labels.index(oos_label)
        hits = sum(p == oos and g == oos for p, g in zip(pred, gold, strict=True))
        out["oos_recall"] = hits / gold.count(oos) if oos in gold else None
        out["oos_precision"] = hits / pred.count(oos) if oos in pred else None
    in_scope = [ok for ok, g in zip(correct, gold, strict=True) if g != oos]
    out["in_scope_accuracy"] = sum(in_scope) / len(in_scope) if in_scope else None
    return out


def _char_ngram_stats(hyp: str, ref: str, n: int) -> list[tuple[int, int, int]]:
    """Per order 1..n: (hypothesis n-grams, reference n-grams, matched n-grams)."""
    hyp, ref = "".join(hyp.split()), "".join(ref.split())
    stats = []
    for order in range(1, n + 1):
        h = Counter(hyp[i : i + order] for i in range(len(hyp) - order + 1))
        r = Counter(ref[i : i + order] for i in range(len(ref) - order + 1))
        stats.append((sum(h.values()), sum(r.values()), sum((h & r).values())))
    return stats


def _chrf_from_stats(stats: list[tuple[int, int, int]], beta: float) -> float:
    usable = [(m / h, m / r) for h, r, m in stats if h > 0 and r > 0]
    if not usable:
        return 0.0
    precision = sum(p for p, _ in usable) / len(usable)
    recall = sum(r for _, r in usable) / len(usable)
    if precision + recall == 0:
        return 0.0
    b2 = beta**2
    return 100.0 * (1 + b2) * precision * recall / (b2 * precision + recall)


def chrf(hyp: str, ref: str, n: int = 6, beta: float = 2.0) -> float:
    return _chrf_from_stats(_char_ngram_stats(hyp, ref, n), beta)


def corpus_chrf(hyps: list[str], refs: list[str], n: int = 6, beta: float = 2.0) -> float:
    if len(hyps) != len(refs):
        raise ValueError("hyps and refs must have the same length")
    totals = [[0, 0, 0] for _ in range(n)]
    for hyp, ref in zip(hyps, refs, strict=True):
        for total, stat in zip(totals, _char_ngram_stats(hyp, ref, n), strict=True):
            for j in range(3):
                total[j] += stat[j]
    return _chrf_from_stats([(h, r, m) for h, r, m in totals], beta)


def rouge_l(hyp: str, ref: str) -> float:
    h, r = hyp.split(), ref.split()
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for token in h:
        row = [0]
        for j, other in enumerate(r):
            row.append(prev[j] + 1 if token == other else max(prev[j + 1], row[j]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(h), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def predict_intents(
    student: Student, batches: Iterable[tuple[Tensor, Tensor]]
) -> tuple[list[int], list[float]]:
    """batches of (input_ids [B,S], attention_mask [B,S]) -> (argmax intent, its probability)."""
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    preds: list[int] = []
    confidence: list[float] = []
    for input_ids, mask in batches:
        _, _, logits = student.encode(input_ids.to(device), mask.to(device))
        probs, idx = (t.cpu() for t in torch.softmax(logits.float(), dim=-1).max(dim=-1))
        preds.extend(int(i) for i in idx)
        confidence.extend(float(p) for p in probs)
    student.train(was_training)
    return preds, confidence


@torch.no_grad()
def generate_replies(
    student: Student,
    input_ids_list: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    decoding: Decoding | None = None,
) -> list[list[int]]:
    """Replies (token ids, without BOS/EOS) for each encoder input, in order: plain greedy, or
    with the serving runtime's `decoding`."""
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    out: list[list[int]] = []
    for start in range(0, len(input_ids_list), batch_size):
        ids, mask = pad(input_ids_list[start : start + batch_size])
        out.extend(student.generate(ids.to(device), mask.to(device), max_new_tokens, decoding))
    student.train(was_training)
    return out


def measure_latency(
    fn: Callable[[], object],
    runs: int = 50,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Call fn `warmup` times untimed, then `runs` times; -> median_ms, p95_ms, mean_ms.
    p95 interpolates linearly between order statistics. CUDA is synchronised around each call.
    `clock` (seconds) is a seam for tests."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(runs):
        sync()
        start = clock()
        fn()
        sync()
        times.append((clock() - start) * 1000.0)
    ordered = sorted(times)
    pos = 0.95 * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    p95 = ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
    return {
        "median_ms": statistics.median(times),
        "p95_ms": p95,
        "mean_ms": statistics.fmean(times),
    }


def reply_latency(
    student: Student, input_ids: list[int], max_new_tokens: int, runs: int = 50, warmup: int = 5
) -> dict[str, float]:
    """Latency of one request (batch 1): encode + greedy decoding of up to max_new_tokens."""
    return measure_latency(
        lambda: generate_replies(student, [input_ids], max_new_tokens), runs, warmup
    )
