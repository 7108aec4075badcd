"""`chatdistill eval replies`: the replies a bundle serves, measured against reference replies.

The bundle runs on `bundle_runtime.OnnxStudent` with the decoding the API uses (the manifest's
settings and the serving overrides), one conversation at a time, so latency is a single
request's. Figures over the rows:

    chrf, rouge_l      against the rows' reference replies (rows without one are skipped)
    degenerate         share of empty, looping (a word 3-gram 3 times) or cut-off replies,
                       and the count per reason (`bundle_runtime.quality`)
    mean_words         mean reply length in words
    handoff_share      replies that hand the customer to a human
    latency_ms         median and p95 of one reply, tokenization included

In the same run, a retrieval baseline answers each prompt with the reference reply of the most
similar training prompt (TF-IDF cosine over word 1-2 grams). With no training file it searches
the evaluated rows themselves, leaving the row out. A generative student that does not beat it
has no reason to exist on that data. With `teacher` (a responder), the teacher answers the
first rows too, and student, retrieval and teacher are scored on exactly those rows.

Everything is scored as a customer would read it: template slots (`{{Order Number}}`) are
rephrased in the references and the baseline's replies as the API rephrases them in the
student's (`bundle_runtime.slots`), so no side wins or loses on braces.

`student` is the generated text of every row; `served` is what the API sends after the guard
(`bundle_runtime.guard`, with the bundle's seeded approved answers standing for the operators'):
its chrF is over the rows the bot answered, and its `fallback_share` the rows whose generated
reply the guard replaced.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from bundle_runtime.guard import GuardDecision, decide
from bundle_runtime.onnx_student import OnnxStudent, StudentReply
from bundle_runtime.quality import degenerate_counts, words
from bundle_runtime.slots import rephrase_slots
from bundle_runtime.source import format_source
from distill_worker.data.building import teacher_messages
from distill_worker.data.labelling import greedy_replies
from distill_worker.data.loaders import Utterance
from distill_worker.stages.evaluate import corpus_chrf, rouge_l
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import TeacherCache
from feedback.monitor import percentile

EXAMPLES = 8


def spread(rows: Sequence[Utterance], limit: int) -> list[Utterance]:
    """At most `limit` rows, taken evenly across the file (files are often sorted by intent)."""
    if limit <= 0 or len(rows) <= limit:
        return list(rows)
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def retrieval_replies(queries: Sequence[Utterance], index: Sequence[Utterance] | None) -> list[str]:
    """The reference reply of each query's most similar indexed prompt (TF-IDF cosine). With
    `index` None the queries are their own index and each query's own row is left out."""
    pool = [r for r in (index if index is not None else queries) if r.reply]
    if not pool:
        raise ValueError("the retrieval baseline needs rows with reference replies")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    keys = vectorizer.fit_transform([_text(r) for r in pool])
    sims = (vectorizer.transform([_text(q) for q in queries]) @ keys.T).toarray()
    if index is None:  # leave-one-out: a row may not retrieve itself
        positions = {id(r): j for j, r in enumerate(pool)}
        for i, query in enumerate(queries):
            j = positions.get(id(query))
            if j is not None:
                sims[i, j] = -1.0
    best = np.asarray(sims.argmax(axis=1)).ravel()
    return [rephrase_slots(pool[int(j)].reply or "") for j in best]


def _text(row: Utterance) -> str:
    return format_source(row.turns(), 4)


def _quality(hyps: Sequence[str], refs: Sequence[str | None]) -> dict[str, Any]:
    pairs = [(h, r) for h, r in zip(hyps, refs, strict=True) if r]
    if not pairs:
        return {"reference_rows": 0, "chrf": None, "rouge_l": None}
    return {
        "reference_rows": len(pairs),
        "chrf": round(corpus_chrf([h for h, _ in pairs], [r for _, r in pairs]), 2),
        "rouge_l": round(statistics.fmean(rouge_l(h, r) for h, r in pairs), 4),
    }


def served(student: OnnxStudent, answer: StudentReply, row: Utterance) -> GuardDecision:
    """What the API sends for `answer` (`chat_api.replies.guard`), with the bundle's seeded
    approved answers standing for the operators' own."""
    return decide(answer, student.manifest.approved_seeds.get(answer.intent), row.text)


def _served_figures(
    decisions: Sequence[GuardDecision], refs: Sequence[str | None]
) -> dict[str, Any]:
    answered = [(d.text, r) for d, r in zip(decisions, refs, strict=True) if d.source != "handoff"]
    n = len(decisions)
    return {
        **_quality([t for t, _ in answered], [r for _, r in answered]),
        "answered": len(answered),
        "fallback_share": round(sum(d.source == "approved" for d in decisions) / n, 4),
        "handoff_share": round(sum(d.source == "handoff" for d in decisions) / n, 4),
        "guard_reasons": dict(
            sorted(Counter(d.reason for d in decisions if d.reason is not None).items())
        ),
    }


def teacher_side(
    responder: Responder,
    rows: Sequence[Utterance],
    hyps: Sequence[str],
    baseline: Sequence[str] | None,
    refs: Sequence[str | None],
    *,
    max_new_tokens: int,
    cache: TeacherCache,
) -> dict[str, Any]:
    """The responder's greedy replies to `rows` (no knowledge file: the prompt the run's teacher
    had without one), scored beside the student's and the baseline's on the same rows."""
    chats = [teacher_messages(None, r.turns()) for r in rows]
    started = time.perf_counter()
    replies, stats = greedy_replies(responder, chats, cache, max_new_tokens=max_new_tokens)
    n = len(rows)
    return {
        "rows": n,
        "teacher": _quality([rephrase_slots(t) for t in replies], refs[:n]),
        "student": _quality(hyps[:n], refs[:n]),
        "retrieval": _quality(baseline[:n], refs[:n]) if baseline is not None else None,
        "teacher_id": responder.teacher_id,
        "seconds": round(time.perf_counter() - started, 1),
        "cache": stats.as_dict(),
        "examples": [
            {"prompt": r.text, "teacher": t} for r, t in list(zip(rows, replies, strict=True))[:3]
        ],
    }


def evaluate_replies(
    bundle_dir: Path,
    rows: Sequence[Utterance],
    *,
    train: Sequence[Utterance] | None = None,
    precision: Literal["auto", "fp32", "int8"] = "auto",
    decoding_overrides: Mapping[str, Any] | None = None,
    limit: int = 300,
    teacher: tuple[Responder, int, TeacherCache] | None = None,
) -> dict[str, Any]:
    """Serve every row through the bundle and score it (see the module docstring). `teacher`:
    (responder, how many of the rows it answers, its reply cache)."""
    chosen = spread(rows, limit)
    if not chosen:
        raise ValueError("the data has no rows to evaluate")
    student = OnnxStudent(bundle_dir, precision=precision, decoding_overrides=decoding_overrides)
    answers: list[StudentReply] = []
    times: list[float] = []
    for row in chosen:
        started = time.perf_counter()
        answers.append(student.reply(row.turns()))
        times.append((time.perf_counter() - started) * 1000.0)
    hyps = [a.text for a in answers]
    refs = [rephrase_slots(r.reply) if r.reply else None for r in chosen]
    decisions = [served(student, a, r) for a, r in zip(answers, chosen, strict=True)]
    counts = degenerate_counts((a.text, a.finish_reason) for a in answers)
    report: dict[str, Any] = {
        "bundle": student.model_version,
        "precision": student.precision,
        "decoding": student.decoding.to_dict(),
        "rows": len(chosen),
        "student": {
            **_quality(hyps, refs),
            "degenerate": round(counts["degenerate"] / counts["rows"], 4),
            "degenerate_by_reason": {k: counts[k] for k in ("empty", "repeats", "cut_off")},
            "mean_words": round(statistics.fmean(len(words(h)) for h in hyps), 2),
            "handoff_share": round(sum(a.handoff for a in answers) / len(answers), 4),
            "latency_ms_median": round(statistics.median(times), 2),
            "latency_ms_p95": round(percentile(sorted(times), 0.95) or 0.0, 2),
        },
        "served": _served_figures(decisions, refs),
        "scored_as": "references and baseline with template slots rephrased as served",
    }
    baseline: list[str] | None = None
    if any(refs) or (train is not None and any(r.reply for r in train)):
        baseline = retrieval_replies(chosen, train)
        report["retrieval"] = {
            **_quality(baseline, refs),
            "index": "training file" if train is not None else "the evaluated rows, leave-one-out",
            "mean_words": round(statistics.fmean(len(words(b)) for b in baseline), 2),
        }
    if teacher is not None:
        responder, n, cache = teacher
        report["same_rows_as_teacher"] = teacher_side(
            responder,
            chosen[: max(1, n)],
            hyps,
            baseline,
            refs,
            max_new_tokens=student.limit(None),
            cache=cache,
        )
    report["examples"] = [
        {
            "prompt": row.text,
            "reference": refs[i],
            "student": answer.text,
            "intent": answer.intent,
            "served": decisions[i].source,
            "sent": decisions[i].text,  # what the customer reads, after the guard
            "retrieval": baseline[i] if baseline is not None else None,
        }
        for i, (row, answer) in enumerate(zip(chosen, answers, strict=True))
        if i < EXAMPLES
    ]
    return report
