"""Evaluation of one run's student on its held-out split: calibration of the intent confidence,
intent metrics (student and encoder teacher), reply quality against the responder, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from bundle_runtime.decoding import Decoding, trim_to_sentence
from bundle_runtime.quality import degenerate_counts
from bundle_runtime.vocab import DecoderVocab
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
from distill_worker.stages.calibrate import fit_temperature, fold_temperature
from distill_worker.stages.evaluate import (
    corpus_chrf,
    generate_replies,
    intent_metrics,
    predict_intents,
    reply_latency,
    rouge_l,
)
from distill_worker.stages.training import pad
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.encoder import EncoderTeacher
from distill_worker.teacher.grounding import Knowledge


def calibrate(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str]
) -> float:
    """Fit the intent temperature on the held-out rows and fold it into the head."""
    index = {label: i for i, label in enumerate(labels)}
    rows = [r for r in dev if r.intent in index]
    if not rows:
        return 1.0
    ids = source.ids([r.turns() for r in rows])
    student.eval()
    with torch.no_grad():
        logits = torch.cat(
            [student.encode(*pad(ids[i : i + 64]))[2] for i in range(0, len(ids), 64)]
        )
    temperature = fit_temperature(logits, torch.tensor([index[r.intent or ""] for r in rows]))
    fold_temperature(student, temperature)
    return temperature


def evaluate_run(
    student: Student,
    teacher: EncoderTeacher,
    responder: Responder,
    knowledge: Knowledge | None,
    source: SourceTokenizer,
    dev: list[Utterance],
    labels: list[str],
    oos_label: str | None,
    vocab: DecoderVocab,
    *,
    responder_dir: Path,
    cache: TeacherCache | None,
    work_dir: Path,
    eval_replies: int,
    seed: int,
    max_reply_tokens: int,
) -> dict[str, Any]:
    index = {label: i for i, label in enumerate(labels)}
    labelled = [r for r in dev if r.intent in index]
    ids = source.ids([r.turns() for r in labelled])
    batches = [pad(ids[i : i + 64]) for i in range(0, len(ids), 64)]
    pred, _ = predict_intents(student, batches)
    gold = [index[r.intent or ""] for r in labelled]
    intent: dict[str, Any] = dict(intent_metrics(pred, gold, labels, oos_label))
    texts = [source.text(r.turns()) for r in labelled]
    teacher_pred = (
        teacher_logits_in_order(teacher, texts, labels).argmax(dim=-1).tolist() if texts else []
    )
    intent["teacher"] = intent_metrics(teacher_pred, gold, labels, oos_label)
    # Per intent, so that forgetting of old intents after an incremental run shows.
    intent["per_intent_accuracy"] = {
        labels[c]: round(sum(p == g for p, g in zip(pred, gold, strict=True) if g == c) / n, 4)
        for c in sorted(set(gold))
        if (n := gold.count(c))
    }

    prompts = sample_prompts(dev, eval_replies, seed + 1)
    chats = [teacher_messages(knowledge, p.turns()) for p in prompts]
    store, owned = open_cache(cache, work_dir)
    try:
        refs, ref_stats = greedy_replies(responder, chats, store, max_new_tokens=max_reply_tokens)
    finally:
        if owned:
            store.close()
    decoder_tokenizer = Tokenizer.from_file(str(responder_dir / "tokenizer.json"))
    prompt_ids = source.ids([p.turns() for p in prompts])
    # As served: the bundle's decoding controls and the sentence-boundary trim of cut replies.
    generated = generate_replies(student, prompt_ids, max_reply_tokens, decoding=Decoding())
    finish = ["length" if len(g) >= max_reply_tokens else "stop" for g in generated]
    hyps = []
    for g, why in zip(generated, finish, strict=True):
        text = decoder_tokenizer.decode(vocab.to_responder(g), skip_special_tokens=True).strip()
        hyps.append(trim_to_sentence(text) if why == "length" and text else text)
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
