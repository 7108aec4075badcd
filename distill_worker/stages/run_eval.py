"""Evaluation of one run's student on its held-out split: calibration of the intent confidence,
intent metrics (student and encoder teacher), reply quality against the responder, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bundle_runtime.decoding import Decoding, trim_to_sentence
from bundle_runtime.handoff_score import MAX_SOFTMAX, intent_scores
from bundle_runtime.intents import as_served
from bundle_runtime.quality import degenerate_counts
from distill_worker.data.building import (
    SourceTokenizer,
    sample_prompts,
    teacher_logits_in_order,
    teacher_messages,
)
from distill_worker.data.labelling import greedy_replies
from distill_worker.data.loaders import Utterance
from distill_worker.data.run_teachers import open_cache
from distill_worker.model.student import Student
from distill_worker.run_config import AUTO, RunConfig
from distill_worker.run_state import RunData, RunState
from distill_worker.stages.calibrate import (
    HandoffCalibration,
    calibrate_logits,
    fit_temperature,
    fold_temperature,
)
from distill_worker.stages.evaluate import (
    corpus_chrf,
    generate_replies,
    intent_metrics,
    reply_latency,
    rouge_l,
)
from distill_worker.stages.training import pad
from distill_worker.teacher.cache import TeacherCache


def calibrate(
    student: Student, source: SourceTokenizer, rows: list[Utterance], labels: list[str]
) -> float:
    """Fit the intent temperature on `rows` (a run's calibration rows) and fold it into the head."""
    index = {label: i for i, label in enumerate(labels)}
    rows = [r for r in rows if r.intent in index]
    if not rows:
        return 1.0
    logits = _intent_logits(student, source, rows)
    temperature = fit_temperature(logits, torch.tensor([index[r.intent or ""] for r in rows]))
    fold_temperature(student, temperature)
    return temperature


def calibrate_handoff(
    student: Student,
    source: SourceTokenizer,
    data: RunData,
    *,
    target_precision: float,
    oos_prior: float,
    pseudo_oos: bool = True,
    seed: int = 0,
    score: str = AUTO,
) -> HandoffCalibration | None:
    """The handoff threshold on the (temperature-calibrated) student, from the calibration rows:
    their in-scope rows, and as negatives their out-of-scope rows and the out-of-domain rows
    (`calibrate_logits`: the score, pseudo-out-of-scope rows with `pseudo_oos`, folds drawn
    from `seed`). None without labelled calibration rows (the configured threshold stays)."""
    index = {label: i for i, label in enumerate(data.labels)}
    oos = index.get(data.oos_label) if data.oos_label is not None else None
    in_scope = [r for r in data.calibration if r.intent in index and index[r.intent] != oos]
    if not in_scope:
        return None
    negatives = [r for r in data.calibration if oos is not None and r.intent == data.oos_label]
    negatives += data.ood
    return calibrate_logits(
        _intent_logits(student, source, in_scope),
        [index[r.intent or ""] for r in in_scope],
        _intent_logits(student, source, negatives) if negatives else None,
        oos=oos,
        score=score,
        target_precision=target_precision,
        oos_prior=oos_prior,
        pseudo_oos=pseudo_oos,
        seed=seed,
    )


def handoff_threshold(state: RunState, config: RunConfig) -> float:
    """The threshold the bundle serves with: the calibrated one, else the configured one."""
    return (
        state.handoff.threshold if state.handoff is not None else config.distill.handoff_threshold
    )


def handoff_score(state: RunState) -> str:
    """What the bundle's threshold is compared with: the calibrated score; max-softmax where
    nothing was calibrated (the configured threshold is a probability)."""
    return state.handoff.score if state.handoff is not None else MAX_SOFTMAX


def _intent_logits(student: Student, source: SourceTokenizer, rows: list[Utterance]) -> Tensor:
    """The student's intent logits for `rows`, dropout off: [N, C] float32 on the CPU (the
    student may be on a GPU)."""
    ids = source.ids([r.turns() for r in rows])
    device = next(student.parameters()).device
    was_training = student.training
    student.eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, len(ids), 64):
            input_ids, mask = pad(ids[i : i + 64])
            chunks.append(student.encode(input_ids.to(device), mask.to(device))[2].cpu())
    student.train(was_training)
    return torch.cat(chunks).float() if chunks else torch.zeros(0, student.cfg.n_intents)


def student_replies(
    state: RunState, prompt_ids: list[list[int]], max_reply_tokens: int
) -> tuple[list[str], list[str]]:
    """The student's reply texts to encoder inputs and their finish reasons, as served: the
    bundle's decoding controls and the sentence-boundary trim of cut replies."""
    generated = generate_replies(state.student, prompt_ids, max_reply_tokens, decoding=Decoding())
    finish = ["length" if len(g) >= max_reply_tokens else "stop" for g in generated]
    hyps = []
    for g, why in zip(generated, finish, strict=True):
        text = state.decoder_tokenizer.decode(
            state.vocab.to_responder(g), skip_special_tokens=True
        ).strip()
        hyps.append(trim_to_sentence(text) if why == "length" and text else text)
    return hyps, finish


def evaluate_run(
    state: RunState, config: RunConfig, *, cache: TeacherCache | None, work_dir: Path
) -> dict[str, Any]:
    """The student (and the encoder teacher) on the held-out rows; reply quality against the
    responder's greedy replies to `config.eval_replies` held-out prompts (through `cache`, or an
    SQLite cache in `work_dir`); the torch latency of one reply."""
    student, source, dev = state.student, state.source, state.data.dev
    labels, oos_label = state.data.labels, state.data.oos_label
    seed, max_reply_tokens = config.distill.seed, config.distill.max_reply_tokens
    index = {label: i for i, label in enumerate(labels)}
    # Reported on the rows nothing was tuned on (all held-out rows when there are too few to halve).
    report = state.data.report if state.data.calibration else dev
    labelled = [r for r in report if r.intent in index]
    gold = [index[r.intent or ""] for r in labelled]
    oos = index.get(oos_label) if oos_label is not None else None
    score = handoff_score(state)
    argmax, _, values = intent_scores(
        _intent_logits(student, source, labelled).double().numpy(), score, oos
    )
    pred, handoff = as_served(
        argmax,
        values,
        gold,
        threshold=handoff_threshold(state, config),
        oos=oos,
        counts_as_oos=oos if oos in gold else None,
    )
    intent: dict[str, Any] = dict(intent_metrics(pred, gold, labels, oos_label))
    calibration = state.handoff.as_dict() if state.handoff is not None else None
    intent["handoff"] = {**handoff, "score": score, "calibration": calibration}
    # The classifier alone, every row answered: what the handoff is weighed against.
    intent["classifier_accuracy"] = sum(p == g for p, g in zip(argmax, gold, strict=True)) / len(
        gold
    )
    intent["rows"] = {
        "reported_on": "report" if report is not dev else "held-out (too few rows to halve)",
        "report": len(labelled),
        "calibration": len(state.data.calibration),
        "ood_negatives": len(state.data.ood),
        "unlabelled_kd": len(state.data.unlabelled),
    }
    if state.data.ood_filter:
        intent["rows"]["ood_corpus"] = state.data.ood_filter
    texts = [source.text(r.turns()) for r in labelled]
    teacher_pred = (
        teacher_logits_in_order(state.teacher, texts, labels).argmax(dim=-1).tolist()
        if texts
        else []
    )
    intent["teacher"] = intent_metrics(teacher_pred, gold, labels, oos_label)
    # Per intent, so that forgetting of old intents after an incremental run shows.
    intent["per_intent_accuracy"] = {
        labels[c]: round(sum(p == g for p, g in zip(pred, gold, strict=True) if g == c) / n, 4)
        for c in sorted(set(gold))
        if (n := gold.count(c))
    }

    prompts = sample_prompts(dev, config.eval_replies, seed + 1)
    chats = [teacher_messages(state.knowledge, p.turns()) for p in prompts]
    store, owned = open_cache(cache, work_dir)
    try:
        refs, ref_stats = greedy_replies(
            state.responder, chats, store, max_new_tokens=max_reply_tokens
        )
    finally:
        if owned:
            store.close()
    prompt_ids = source.ids([p.turns() for p in prompts])
    hyps, finish = student_replies(state, prompt_ids, max_reply_tokens)
    degenerate = degenerate_counts(zip(hyps, finish, strict=True))
    replies = {
        "n": len(hyps),
        "degenerate": round(degenerate["degenerate"] / len(hyps), 4) if hyps else None,
        "degenerate_by_reason": {k: v for k, v in degenerate.items() if k != "rows"},
        "chrf_vs_teacher": round(corpus_chrf(hyps, refs), 2) if hyps else None,
        "rouge_l_vs_teacher": round(sum(map(rouge_l, hyps, refs)) / len(hyps), 4) if hyps else None,
        "examples": [
            {"prompt": p.text, "teacher": ref, "student": hyp}
            for p, ref, hyp in list(zip(prompts, refs, hyps, strict=True))[:5]
        ],
    }
    latency = reply_latency(student, prompt_ids[0], max_reply_tokens, runs=10) if prompt_ids else {}
    return {
        "intent": intent,
        "replies": replies,
        "torch_latency_ms": latency,
        "teacher_cache_eval": ref_stats.as_dict(),
        "heldout_rows": len(labelled),
    }
