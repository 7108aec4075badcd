"""One distillation run, from a labelled file to a parity-checked bundle.

    data -> encoder teacher -> stage 1 (encoder) -> teacher replies -> stage 2 (decoder +
    reward) -> evaluation on the held-out split -> export

Every step leaves its result in the run's work folder (fine-tuned encoder teacher, stage
checkpoints, teacher replies), so a run that stops part-way continues where it was when it is
started again with the same work folder and config.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from distill_worker.config import DistillConfig
from distill_worker.data.building import (
    SourceTokenizer,
    TeacherReply,
    intent_examples,
    reply_examples,
    sample_prompts,
    stratified_split,
    teacher_logits_in_order,
    teacher_messages,
)
from distill_worker.data.demo_corpus import OOS, demo_knowledge_path, demo_utterances
from distill_worker.data.labelling import greedy_replies, label_replies
from distill_worker.data.loaders import Utterance, load_utterances
from distill_worker.data.vocab import DecoderVocab, build_decoder_vocab
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.calibrate import fit_temperature, fold_temperature
from distill_worker.stages.decoder_stage import DecoderStage
from distill_worker.stages.encoder_stage import EncoderStage
from distill_worker.stages.evaluate import (
    corpus_chrf,
    generate_replies,
    intent_metrics,
    predict_intents,
    reply_latency,
    rouge_l,
)
from distill_worker.stages.export_onnx import export_bundle
from distill_worker.stages.structural import init_student_encoder_from_teacher
from distill_worker.stages.training import pad
from distill_worker.teacher.cache import CacheStats, TeacherCache
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm
from distill_worker.teacher.grounding import load_knowledge
from distill_worker.teacher.local import LocalResponder
from distill_worker.teacher.prepare import META_FILE
from feedback.bundle import Manifest, format_source

Log = Callable[[str], None]


@dataclass(frozen=True)
class DistillRequest:
    out_dir: Path  # the bundle folder to write (must not exist)
    work_dir: Path  # the run's folder: teacher, checkpoints, logs, teacher replies
    responder_dir: Path  # a prepared responder (chatdistill teacher prepare)
    config: DistillConfig
    data_path: Path | None = None  # None: the built-in demo corpus
    knowledge_path: Path | None = None  # company policies for grounded teacher replies
    split: str = "train"  # for CLINC150's JSON
    reply_budget: int = 200  # teacher replies for stage 2 (the slow part)
    eval_replies: int = 24  # extra teacher replies on held-out prompts, for reply quality
    top_k: int = 20  # token-level KD keeps the teacher's top-k next tokens
    teacher_epochs: int = 3
    teacher_lr: float = 5e-5
    teacher_max_minutes: float | None = 10.0
    dev_fraction: float = 0.1
    context_turns: int = 4
    int8: bool = True
    model_version: str | None = None
    # Teacher outputs by content hash (the feedback store's `teacher_outputs`); None: an SQLite
    # cache in work_dir, so a restarted run still resumes its teacher replies.
    teacher_cache: TeacherCache | None = None


@dataclass(frozen=True)
class DistillResult:
    manifest: Manifest
    bundle_dir: Path
    metrics: dict[str, Any]


def run_distillation(req: DistillRequest, log: Log = print) -> DistillResult:
    started = time.monotonic()
    cfg = req.config
    req.work_dir.mkdir(parents=True, exist_ok=True)
    (req.work_dir / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    torch.manual_seed(cfg.seed)

    rows = _load_rows(req, log)
    labels = sorted({r.intent for r in rows if r.intent})
    if len(labels) < 2:
        raise ValueError("the data needs at least two intents; label the rows (text,category)")
    oos_label = OOS if OOS in labels else None
    train, dev = stratified_split(rows, req.dev_fraction, cfg.seed)
    log(f"[1/7] data: {len(rows)} rows, {len(labels)} intents, {len(train)} train / {len(dev)} dev")

    teacher = _encoder_teacher(req, train, log)
    source = SourceTokenizer(
        locate_minilm() / "tokenizer.json",
        max_tokens=cfg.max_source_tokens,
        context_turns=req.context_turns,
    )
    meta = json.loads((req.responder_dir / META_FILE).read_text(encoding="utf-8"))
    bos, eos = int(meta["bos_token_id"]), int(meta["eos_token_id"])
    pad_id = int(meta["pad_token_id"]) if meta.get("pad_token_id") is not None else eos

    decoder_tokenizer = Tokenizer.from_file(str(req.responder_dir / "tokenizer.json"))
    knowledge_path = req.knowledge_path
    if knowledge_path is None and req.data_path is None:
        knowledge_path = demo_knowledge_path()  # the demo shop's own policies
    knowledge = load_knowledge(knowledge_path) if knowledge_path else None
    responder = LocalResponder(req.responder_dir)
    prompts = sample_prompts(train, req.reply_budget, cfg.seed)
    bounded = len(prompts) < len({r.text.lower() for r in train})
    log(
        f"[3/7] teacher replies: {len(prompts)} prompts"
        + (f" (bounded by --reply-budget {req.reply_budget})" if bounded else "")
    )
    replies, cache_stats = _cached_replies(req, responder, prompts, knowledge, log)
    raw_examples = reply_examples(
        replies,
        [r for r in train if r.reply],
        source,
        lambda text: list(decoder_tokenizer.encode(text, add_special_tokens=False).ids),
        eos_id=eos,
        max_reply_tokens=cfg.max_reply_tokens,
        seed=cfg.seed,
    )
    vocab = build_decoder_vocab(
        [pad_id, bos, eos],
        [e.reply_ids for e in raw_examples],
        [[ids for ids, _ in e.teacher_topk or []] for e in raw_examples],
    )
    stage2_examples = [
        replace(
            e,
            reply_ids=vocab.to_student(e.reply_ids),
            teacher_topk=vocab.map_topk(e.teacher_topk) if e.teacher_topk else None,
        )
        for e in raw_examples
    ]
    log(f"      decoder vocabulary: {vocab.size} of the responder's {meta['vocab_size']} tokens")

    student = Student(
        StudentConfig(
            n_intents=len(labels),
            enc_vocab_size=teacher.vocab_size,
            enc_layers=cfg.enc_layers,
            dec_vocab_size=vocab.size,
            dec_hidden=cfg.dec_hidden,
            dec_layers=cfg.dec_layers,
            dec_heads=cfg.dec_heads,
            dec_ffn=cfg.dec_ffn,
            dec_bos_id=vocab.to_student([bos])[0],
            dec_eos_id=vocab.to_student([eos])[0],
            dec_pad_id=vocab.to_student([pad_id])[0],
            dropout=cfg.dropout,
        )
    )
    if cfg.init == "teacher_layers":
        init_student_encoder_from_teacher(student, teacher.teacher_state_dict(), cfg.enc_layers)
    log(f"      student: {student.num_parameters()['total'] / 1e6:.1f}M parameters ({cfg.init})")

    stage1_examples = intent_examples(train, labels, source, teacher)
    log(f"[4/7] stage 1 (encoder): {len(stage1_examples)} examples")
    stage1 = EncoderStage(
        student,
        cfg,
        stage1_examples,
        teacher.hidden_size,
        req.work_dir / "logs" / "stage1.jsonl",
        req.work_dir / "stage1",
    )
    stage1.setup()
    stage1_metrics = stage1.train()
    stage1.cleanup()
    _note_cap(stage1_metrics, "stage 1", "--stage1-epochs or stage1_max_minutes", log)
    temperature = _calibrate(student, source, dev, labels)
    log(f"      intent confidence calibrated on the held-out split: temperature {temperature:.3f}")

    log(f"[5/7] stage 2 (decoder + reward): {len(stage2_examples)} examples")
    stage2 = DecoderStage(
        student,
        cfg,
        stage2_examples,
        req.work_dir / "logs" / "stage2.jsonl",
        req.work_dir / "stage2",
    )
    stage2.setup()
    stage2_metrics = stage2.train()
    stage2.cleanup()
    _note_cap(stage2_metrics, "stage 2", "--stage2-epochs or stage2_max_minutes", log)

    log("[6/7] evaluating on the held-out split")
    metrics = _evaluate(
        req, student, teacher, responder, knowledge, source, dev, labels, oos_label, vocab
    )
    metrics["stage1"] = _plain(stage1_metrics)
    metrics["stage2"] = _plain(stage2_metrics)
    metrics["reply_budget"] = {"prompts": len(prompts), "bounded": bounded}
    metrics["teacher_cache"] = cache_stats.as_dict()
    metrics["train_rows"], metrics["dev_rows"] = len(train), len(dev)
    log("      " + json.dumps({k: metrics[k] for k in ("intent", "replies")}, default=str))

    version = req.model_version or _version_id(cfg)
    log(f"[7/7] exporting bundle {version} to {req.out_dir}")
    parity = source.ids([r.turns() for r in (dev or train)[:8]])
    metrics["wall_seconds"] = round(time.monotonic() - started, 1)
    manifest = export_bundle(
        student,
        req.out_dir,
        model_version=version,
        intent_labels=labels,
        oos_label=oos_label,
        encoder_tokenizer_json=source.path,
        decoder_tokenizer_json=req.responder_dir / "tokenizer.json",
        special_tokens={
            "enc_cls": teacher.cls_id,
            "enc_sep": teacher.sep_id,
            "enc_pad": teacher.pad_id,
            "dec_bos": student.cfg.dec_bos_id,
            "dec_eos": student.cfg.dec_eos_id,
            "dec_pad": student.cfg.dec_pad_id,
        },
        max_source_tokens=cfg.max_source_tokens,
        max_new_tokens=cfg.max_reply_tokens,
        context_turns=req.context_turns,
        handoff_threshold=cfg.handoff_threshold,
        metrics=metrics,
        run_id=None,
        int8=req.int8,
        parity_samples=parity,
        decoder_vocab=list(vocab.ids),
    )
    log(f"      done in {metrics['wall_seconds']} s: {req.out_dir}")
    return DistillResult(manifest=manifest, bundle_dir=req.out_dir, metrics=metrics)


def _load_rows(req: DistillRequest, log: Log) -> list[Utterance]:
    if req.data_path is None:
        log("      no --data: using the built-in demo corpus (an online shop)")
        return demo_utterances(seed=req.config.seed)
    return load_utterances(req.data_path, split=req.split)


def _encoder_teacher(req: DistillRequest, train: list[Utterance], log: Log) -> EncoderTeacher:
    folder = req.work_dir / "encoder_teacher"
    labels = sorted({r.intent for r in train if r.intent})
    if (folder / "labels.json").is_file():
        teacher = EncoderTeacher.load(folder)
        if sorted(teacher.labels) == labels:
            log(f"[2/7] encoder teacher: reusing the fine-tuned one in {folder}")
            return teacher
    log(f"[2/7] encoder teacher: fine-tuning all-MiniLM-L6-v2 on {len(train)} rows")
    # A distillation job owns its machine: the teacher uses every torch thread (2 were 1.7-2x
    # faster than 1 here when nothing else ran; the serving default stays 1).
    teacher = load_encoder(locate_minilm(), threads=torch.get_num_threads())
    source_texts = [_source_text(r, req.context_turns) for r in train if r.intent]
    result = teacher.finetune(
        source_texts,
        [r.intent for r in train if r.intent],
        epochs=req.teacher_epochs,
        lr=req.teacher_lr,
        seed=req.config.seed,
        max_minutes=req.teacher_max_minutes,
    )
    log("      " + json.dumps(_plain(result), default=str))
    if result.get("stopped_early"):
        log(f"      the encoder teacher stopped at its time cap ({req.teacher_max_minutes} min)")
    teacher.save(folder)
    return teacher


def _calibrate(
    student: Student, source: SourceTokenizer, dev: list[Utterance], labels: list[str]
) -> float:
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


def _note_cap(metrics: dict[str, Any], name: str, knob: str, log: Log) -> None:
    if metrics.get("stop_reason") == "time_limit":
        log(
            f"      {name} stopped at its time cap after {metrics.get('step')} of "
            f"{metrics.get('total_steps')} steps (raise {knob} to train longer)"
        )


def _source_text(row: Utterance, context_turns: int) -> str:
    return format_source(row.turns(), context_turns)


def _cached_replies(
    req: DistillRequest,
    responder: LocalResponder,
    prompts: list[Utterance],
    knowledge: Any,
    log: Log,
) -> tuple[list[TeacherReply], CacheStats]:
    """Teacher replies for the prompts through the teacher cache: only new prompts are asked."""
    cache = req.teacher_cache or TeacherCache.in_sqlite_file(req.work_dir / "teacher_cache.db")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-6)
        log(f"      {done}/{total} replies ({rate:.2f}/s)")

    try:
        replies, stats = label_replies(
            responder,
            prompts,
            knowledge,
            cache,
            max_new_tokens=req.config.max_reply_tokens,
            top_k=req.top_k,
            progress=progress,
        )
    finally:
        if req.teacher_cache is None:
            cache.close()
    log(f"      teacher cache: {stats.hits} hits, {stats.misses} asked")
    return replies, stats


def _evaluate(
    req: DistillRequest,
    student: Student,
    teacher: EncoderTeacher,
    responder: LocalResponder,
    knowledge: Any,
    source: SourceTokenizer,
    dev: list[Utterance],
    labels: list[str],
    oos_label: str | None,
    vocab: DecoderVocab,
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

    prompts = sample_prompts(dev, req.eval_replies, req.config.seed + 1)
    chats = [teacher_messages(knowledge, p.turns()) for p in prompts]
    cache = req.teacher_cache or TeacherCache.in_sqlite_file(req.work_dir / "teacher_cache.db")
    try:
        refs, ref_stats = greedy_replies(
            responder, chats, cache, max_new_tokens=req.config.max_reply_tokens
        )
    finally:
        if req.teacher_cache is None:
            cache.close()
    decoder_tokenizer = Tokenizer.from_file(str(req.responder_dir / "tokenizer.json"))
    prompt_ids = source.ids([p.turns() for p in prompts])
    generated = generate_replies(student, prompt_ids, req.config.max_reply_tokens)
    hyps = [
        decoder_tokenizer.decode(vocab.to_responder(g), skip_special_tokens=True).strip()
        for g in generated
    ]
    replies = {
        "n": len(hyps),
        "chrf_vs_teacher": round(corpus_chrf(hyps, refs), 2) if hyps else None,
        "rouge_l_vs_teacher": round(sum(map(rouge_l, hyps, refs)) / len(hyps), 4) if hyps else None,
        "examples": [
            {"prompt": p.text, "teacher": ref, "student": hyp}
            for p, ref, hyp in list(zip(prompts, refs, hyps, strict=True))[:5]
        ],
    }
    latency = (
        reply_latency(student, prompt_ids[0], req.config.max_reply_tokens, runs=10)
        if prompt_ids
        else {}
    )
    return {
        "intent": intent,
        "replies": replies,
        "torch_latency_ms": latency,
        "teacher_cache_eval": ref_stats.as_dict(),
    }


def _version_id(cfg: DistillConfig) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"v{stamp}-{hashlib.sha256(cfg.to_json().encode()).hexdigest()[:6]}"


def _plain(data: Any) -> Any:
    """Metrics dicts as plain JSON values."""
    return json.loads(
        json.dumps(data if not hasattr(data, "__dataclass_fields__") else asdict(data), default=str)
    )
