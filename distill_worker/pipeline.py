"""One distillation run, from a labelled file or a frozen snapshot to a parity-checked bundle.

    data -> teacher (encoder) -> replies (responder) -> stage1 (encoder) -> stage2 (decoder +
    reward) -> evaluate (held-out split) -> export

Every step leaves its result in the run's work folder (fine-tuned encoder teacher, stage
checkpoints, teacher replies in the cache), so a run that stops part-way continues where it was
when it is started again with the same work folder and config.

Hooks for the continual loop: `on_step(name, fraction)` is called at the start of each step
with the run's overall progress; `should_stop()` is asked before each step and a True answer
raises `RunCancelled` (the work folder keeps what was done). An incremental run takes its data
from a snapshot (`snapshot_dir`: its fixed held-out split instead of a fresh one) and its
initial weights from the champion bundle (`warm_start_bundle`).

Errors: `RunCancelled` (asked to stop), `ValueError` (unusable data or config),
`distill_worker.data.snapshots.SnapshotError`, `distill_worker.stages.export_onnx.ExportError`.
A champion that cannot seed the run (no torch weights, corrupted, another architecture) is not an
error: the run starts from the teacher instead and `metrics["warm_start"]["skipped"]` says why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from bundle_runtime.manifest import Manifest
from bundle_runtime.vocab import DecoderVocab, build_decoder_vocab
from distill_worker.config import DistillConfig
from distill_worker.data.approved_seeds import central_replies
from distill_worker.data.augment import adversarial_variants_by_kind
from distill_worker.data.best_of_n import selector_for
from distill_worker.data.building import (
    SourceTokenizer,
    intent_examples,
    intents_with_references,
    reply_examples,
    sample_prompts,
    stratified_split,
)
from distill_worker.data.demo_corpus import OOS, demo_knowledge_path, demo_utterances
from distill_worker.data.loaders import Utterance, load_utterances
from distill_worker.data.run_teachers import cached_replies, encoder_teacher
from distill_worker.data.snapshots import load_snapshot
from distill_worker.model.student import Student, StudentConfig
from distill_worker.stages.decoder_stage import DecoderStage
from distill_worker.stages.encoder_stage import EncoderStage
from distill_worker.stages.export_onnx import export_bundle
from distill_worker.stages.run_eval import calibrate, evaluate_run
from distill_worker.stages.structural import init_student_encoder_from_teacher
from distill_worker.stages.warm_start import (
    Champion,
    WarmStartError,
    champion_vocab,
    imprint_new_intents,
    intent_order,
    load_champion,
    warm_start,
)
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.encoder import locate_minilm
from distill_worker.teacher.grounding import load_knowledge
from distill_worker.teacher.local import LocalResponder
from distill_worker.teacher.prepare import META_FILE

Log = Callable[[str], None]

# Each step's share of a run starts here (rough shares of wall time on a CPU machine).
STEP_START = {
    "data": 0.0,
    "teacher": 0.05,
    "replies": 0.2,
    "stage1": 0.35,
    "stage2": 0.55,
    "evaluate": 0.8,
    "export": 0.9,
}


class RunCancelled(Exception):
    """`should_stop()` answered True before `step`; the work folder keeps what was done, so the
    same request (same work folder and config) resumes from there."""

    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(f"distillation run cancelled before step {step!r} (should_stop)")


@dataclass(frozen=True)
class DistillRequest:
    out_dir: Path  # the bundle folder to write (must not exist)
    work_dir: Path  # the run's folder: teacher, checkpoints, logs, teacher replies
    responder_dir: Path  # a prepared responder (chatdistill teacher prepare)
    config: DistillConfig
    data_path: Path | None = None  # None: the built-in demo corpus (ignored with snapshot_dir)
    knowledge_path: Path | None = None  # company policies for grounded teacher replies
    split: str = "train"  # for CLINC150's JSON
    reply_budget: int = 200  # teacher replies for stage 2 (the slow part)
    eval_replies: int = 24  # extra teacher replies on held-out prompts, for reply quality
    top_k: int = 20  # token-level KD keeps the teacher's top-k next tokens
    teacher_epochs: int = 3
    teacher_lr: float = 5e-5
    teacher_max_minutes: float | None = 10.0
    dev_fraction: float = 0.1  # without a snapshot: the stratified held-out share
    adversarial_fraction: float = 0.05  # noisy copies of labelled train rows (stage 1)
    context_turns: int = 4
    int8: bool = True
    model_version: str | None = None
    # Teacher outputs by content hash (the feedback store's `teacher_outputs`); None: an SQLite
    # cache in work_dir, so a restarted run still resumes its teacher replies.
    teacher_cache: TeacherCache | None = None
    # A snapshot folder (distill_worker.data.snapshots): its train / fixed held-out split.
    snapshot_dir: Path | None = None
    # The champion bundle to initialise the student from (an incremental run).
    warm_start_bundle: Path | None = None
    on_step: Callable[[str, float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    run_id: uuid.UUID | None = None  # written into the bundle's manifest
    # The teacher that writes replies; None: the prepared responder in this process. Its
    # tokenizer and special tokens always come from responder_dir.
    responder: Responder | None = None


@dataclass(frozen=True)
class DistillResult:
    manifest: Manifest
    bundle_dir: Path
    metrics: dict[str, Any]


def run_distillation(req: DistillRequest, log: Log = print) -> DistillResult:
    started = time.monotonic()
    cfg = req.config

    def step(name: str) -> None:
        if req.should_stop is not None and req.should_stop():
            log(f"      stopping before {name}: the run was asked to stop")
            raise RunCancelled(name)
        if req.on_step is not None:
            req.on_step(name, STEP_START[name])

    step("data")
    req.work_dir.mkdir(parents=True, exist_ok=True)
    (req.work_dir / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    torch.manual_seed(cfg.seed)
    train, dev = _train_and_heldout(req, log)
    champion, skipped = _champion(req.warm_start_bundle, log)
    labels = sorted({r.intent for r in train if r.intent})
    if len(labels) < 2:
        raise ValueError("the data needs at least two intents; label the rows (text,category)")
    if champion is not None:
        labels = intent_order(champion, labels)
    oos_label = OOS if OOS in labels else None
    by_kind = adversarial_variants_by_kind(train, req.adversarial_fraction, cfg.seed)
    noisy = [row for rows in by_kind.values() for row in rows]
    stage1_rows = [*train, *noisy]  # variants train the encoders, never the decoder
    kinds = ", ".join(f"{kind} {len(rows)}" for kind, rows in by_kind.items() if rows)
    log(
        f"[1/7] data: {len(labels)} intents, {len(train)} train / {len(dev)} held-out rows, "
        f"+{len(noisy)} adversarial variants" + (f" ({kinds})" if kinds else "")
    )

    step("teacher")
    log("[2/7] encoder teacher")
    teacher = encoder_teacher(
        req.work_dir,
        stage1_rows,
        context_turns=req.context_turns,
        epochs=req.teacher_epochs,
        lr=req.teacher_lr,
        seed=cfg.seed,
        max_minutes=req.teacher_max_minutes,
        log=log,
    )
    source = SourceTokenizer(
        locate_minilm() / "tokenizer.json",
        max_tokens=cfg.max_source_tokens,
        context_turns=req.context_turns,
    )
    meta = json.loads((req.responder_dir / META_FILE).read_text(encoding="utf-8"))
    bos, eos = int(meta["bos_token_id"]), int(meta["eos_token_id"])
    pad_id = int(meta["pad_token_id"]) if meta.get("pad_token_id") is not None else eos

    step("replies")
    decoder_tokenizer = Tokenizer.from_file(str(req.responder_dir / "tokenizer.json"))
    knowledge_path = req.knowledge_path
    if knowledge_path is None and req.data_path is None and req.snapshot_dir is None:
        knowledge_path = demo_knowledge_path()  # the demo shop's own policies
    knowledge = load_knowledge(knowledge_path) if knowledge_path else None
    responder = req.responder or LocalResponder(req.responder_dir)

    def decoder_tokenize(text: str) -> list[int]:
        return list(decoder_tokenizer.encode(text, add_special_tokens=False).ids)

    covered = intents_with_references(train, cfg.teacher_skip_references)
    askable = [r for r in train if r.intent not in covered]
    prompts = sample_prompts(askable, req.reply_budget, cfg.seed)
    bounded = len(prompts) < len({r.text.lower() for r in askable})
    log(
        f"[3/7] teacher replies: {len(prompts)} prompts"
        + (f" (bounded by --reply-budget {req.reply_budget})" if bounded else "")
        + (
            f"; {len(covered)} intents answered by their own reference replies "
            f"(>= {cfg.teacher_skip_references} each) are not sent to the teacher"
            if covered
            else ""
        )
    )
    selector, best_report = selector_for(
        cfg.best_of_n,
        cfg.variant_temperature,
        champion,
        source,
        decoder_tokenize,
        max_source=cfg.max_source_tokens,
        max_reply=cfg.max_reply_tokens,
    )
    replies, cache_stats = cached_replies(
        responder,
        prompts,
        knowledge,
        req.teacher_cache,
        req.work_dir,
        max_new_tokens=cfg.max_reply_tokens,
        top_k=req.top_k,
        log=log,
        best=(selector, best_report) if selector is not None else None,
    )
    raw_examples = reply_examples(
        replies,
        [r for r in train if r.reply or r.rejected],
        source,
        decoder_tokenize,
        eos_id=eos,
        max_reply_tokens=cfg.max_reply_tokens,
        seed=cfg.seed,
    )
    first = champion_vocab(champion) if champion is not None else []
    vocab = build_decoder_vocab(
        [*first, pad_id, bos, eos],
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
    student = _student(cfg, len(labels), teacher.vocab_size, vocab, (bos, eos, pad_id))
    metrics: dict[str, Any] = {"warm_start": {"skipped": skipped}} if skipped else {}
    if champion is not None:
        try:
            metrics["warm_start"] = warm = warm_start(student, champion, labels, list(vocab.ids))
            by_label = {
                k: source.ids([r.turns() for r in stage1_rows if r.intent == k]) for k in labels
            }
            warm["imprinted"] = imprint_new_intents(
                student, labels, warm["intents_added"], by_label
            )
            log(f"      warm start: {json.dumps(warm)}")
        except WarmStartError as exc:  # the student is untouched: train it from the teacher
            log(f"      no warm start: {exc}")
            metrics["warm_start"] = {"skipped": str(exc)}
            champion = None
    if champion is None and cfg.init == "teacher_layers":
        init_student_encoder_from_teacher(student, teacher.teacher_state_dict(), cfg.enc_layers)
    init = "champion" if champion is not None else cfg.init
    log(f"      student: {student.num_parameters()['total'] / 1e6:.1f}M parameters ({init})")

    step("stage1")
    stage1_examples = intent_examples(stage1_rows, labels, source, teacher)
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
    temperature = calibrate(student, source, dev, labels)
    log(f"      intent confidence calibrated on the held-out split: temperature {temperature:.3f}")

    step("stage2")
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

    step("evaluate")
    log("[6/7] evaluating on the held-out split")
    metrics |= evaluate_run(
        student,
        teacher,
        responder,
        knowledge,
        source,
        dev,
        labels,
        oos_label,
        vocab,
        responder_dir=req.responder_dir,
        cache=req.teacher_cache,
        work_dir=req.work_dir,
        eval_replies=req.eval_replies,
        seed=cfg.seed,
        max_reply_tokens=cfg.max_reply_tokens,
    )
    metrics["stage1"] = _plain(stage1_metrics)
    metrics["stage2"] = _plain(stage2_metrics)
    metrics["reply_budget"] = {"prompts": len(prompts), "bounded": bounded}
    metrics["teacher_cache"] = cache_stats.as_dict()
    metrics["best_of_n"] = best_report.as_dict()
    metrics["train_rows"], metrics["dev_rows"] = len(train), len(dev)
    metrics["adversarial_rows"] = {kind: len(rows) for kind, rows in by_kind.items()}
    if req.snapshot_dir is not None:
        metrics["snapshot"] = {"path": str(req.snapshot_dir), "content_hash": req.snapshot_dir.name}
    log("      " + json.dumps({k: metrics[k] for k in ("intent", "replies")}, default=str))

    step("export")
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
        run_id=str(req.run_id) if req.run_id else None,
        int8=req.int8,
        parity_samples=parity,
        decoder_vocab=list(vocab.ids),
        approved_seeds=central_replies(train, oos_label=oos_label),
    )
    log(f"      done in {metrics['wall_seconds']} s: {req.out_dir}")
    return DistillResult(manifest=manifest, bundle_dir=req.out_dir, metrics=metrics)


def _train_and_heldout(req: DistillRequest, log: Log) -> tuple[list[Utterance], list[Utterance]]:
    if req.snapshot_dir is not None:
        log(f"      snapshot {req.snapshot_dir.name[:12]}: its train and fixed held-out split")
        return load_snapshot(req.snapshot_dir)
    if req.data_path is None:
        log("      no --data: using the built-in demo corpus (an online shop)")
        rows = demo_utterances(seed=req.config.seed, with_replies=True)
    else:
        rows = load_utterances(req.data_path, split=req.split)
    return stratified_split(rows, req.dev_fraction, req.config.seed)


def _champion(bundle: Path | None, log: Log) -> tuple[Champion | None, str | None]:
    """The champion to warm-start from, or why there is none (a cold start is still a run)."""
    if bundle is None:
        return None, None
    try:
        return load_champion(bundle), None
    except WarmStartError as exc:
        log(f"      no warm start: {exc}")
        return None, str(exc)


def _student(
    cfg: DistillConfig,
    n_intents: int,
    enc_vocab: int,
    vocab: DecoderVocab,
    specials: tuple[int, int, int],  # responder bos, eos, pad
) -> Student:
    bos, eos, pad_id = vocab.to_student(specials)
    return Student(
        StudentConfig(
            n_intents=n_intents,
            enc_vocab_size=enc_vocab,
            enc_layers=cfg.enc_layers,
            dec_vocab_size=vocab.size,
            dec_hidden=cfg.dec_hidden,
            dec_layers=cfg.dec_layers,
            dec_heads=cfg.dec_heads,
            dec_ffn=cfg.dec_ffn,
            dec_bos_id=bos,
            dec_eos_id=eos,
            dec_pad_id=pad_id,
            dropout=cfg.dropout,
        )
    )


def _note_cap(metrics: dict[str, Any], name: str, knob: str, log: Log) -> None:
    if metrics.get("stop_reason") == "time_limit":
        log(
            f"      {name} stopped at its time cap after {metrics.get('step')} of "
            f"{metrics.get('total_steps')} steps (raise {knob} to train longer)"
        )


def _version_id(cfg: DistillConfig) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"v{stamp}-{hashlib.sha256(cfg.to_json().encode()).hexdigest()[:6]}"


def _plain(data: Any) -> Any:
    """Metrics dicts as plain JSON values."""
    return json.loads(
        json.dumps(data if not hasattr(data, "__dataclass_fields__") else asdict(data), default=str)
    )
