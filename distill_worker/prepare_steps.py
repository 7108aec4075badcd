"""Steps 1-3 of a distillation run (`distill_worker.pipeline`): what the stages train on.

[1/7] load_data            train / held-out rows, intent labels, adversarial variants,
                           the champion to warm-start from
[2/7] fit_encoder_teacher  the encoder teacher fine-tuned on the labelled rows, and the
                           student's source tokenizer
[3/7] prepare_student      teacher replies (through the cache), the decoder vocabulary, the
                           student (warm-started from the champion or from the teacher)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from bundle_runtime.vocab import DecoderVocab, build_decoder_vocab
from distill_worker import distributed, ranks
from distill_worker.config import DistillConfig
from distill_worker.data.augment import adversarial_variants_by_kind
from distill_worker.data.best_of_n import selector_for
from distill_worker.data.building import (
    ReplyQuota,
    SourceTokenizer,
    intents_with_references,
    reply_examples,
    sample_prompts,
    stratified_split,
    wanted_prompts,
)
from distill_worker.data.demo_corpus import OOS, demo_knowledge_path, demo_utterances
from distill_worker.data.examples import ReplyExample
from distill_worker.data.loaders import Utterance, load_utterances
from distill_worker.data.reply_dev import reply_dev
from distill_worker.data.reply_length import reply_tokens_from_data
from distill_worker.data.run_corpora import ood_negatives, unlabelled_messages
from distill_worker.data.run_teachers import cached_replies, encoder_teacher
from distill_worker.data.snapshots import load_snapshot
from distill_worker.model.student import Student, StudentConfig
from distill_worker.run_config import RunConfig
from distill_worker.run_request import DistillRequest
from distill_worker.run_state import RunData, RunState
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
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm
from distill_worker.teacher.grounding import load_knowledge
from distill_worker.teacher.local import LocalResponder
from distill_worker.teacher.prepare import META_FILE
from feedback.settings import Settings

Log = Callable[[str], None]


def load_data(req: DistillRequest, log: Log) -> RunData:
    """[1/7] The frozen train / held-out rows and the intent labels (the champion's first)."""
    cfg = req.config
    train, dev = _train_and_heldout(req, log)
    champion, skipped = _champion(req.warm_start_bundle, log)
    labels = sorted({r.intent for r in train if r.intent})
    if len(labels) < 2:
        raise ValueError("the data needs at least two intents; label the rows (text,category)")
    if champion is not None:
        labels = intent_order(champion, labels)
    by_kind = adversarial_variants_by_kind(train, cfg.adversarial_fraction, cfg.distill.seed)
    report, calibration = stratified_split(dev, 0.5, cfg.distill.seed + 1)
    unlabelled = unlabelled_messages(cfg.unlabelled_corpus, train, dev, cfg.distill.seed, log)
    # A negative is a message the student never trains on: not a KD-only row either.
    ood, ood_filter = ood_negatives(
        cfg.ood_corpus, train, calibration, cfg.distill.seed, log, other=[*report, *unlabelled]
    )
    data = RunData(
        train=train,
        dev=dev,
        labels=labels,
        oos_label=OOS if OOS in labels else None,
        adversarial=by_kind,
        champion=champion,
        warm_start_skipped=skipped,
        calibration=calibration,
        report=report,
        ood=ood,
        ood_filter=ood_filter,
        unlabelled=unlabelled,
    )
    noisy = sum(len(rows) for rows in by_kind.values())
    kinds = ", ".join(f"{kind} {len(rows)}" for kind, rows in by_kind.items() if rows)
    log(
        f"[1/7] data: {len(labels)} intents, {len(train)} train / {len(dev)} held-out rows "
        f"({len(calibration)} to calibrate on, {len(report)} to report on), "
        f"+{noisy} adversarial variants" + (f" ({kinds})" if kinds else "")
    )
    return data


def resolve_reply_tokens(req: DistillRequest, data: RunData, log: Log) -> DistillRequest:
    """The request with `max_reply_tokens` set: the config's, or from the data's reference
    replies when the config leaves it at 0 (`data.reply_length`; recorded in `data`)."""
    if req.config.distill.max_reply_tokens:
        return req
    tokenizer = Tokenizer.from_file(str(req.responder_dir / "tokenizer.json"))
    ceiling = StudentConfig.dec_max_positions - 1  # the default student's decoder positions
    tokens, how = reply_tokens_from_data(
        data.train, lambda text: tokenizer.encode(text, add_special_tokens=False).ids, ceiling
    )
    data.reply_length = how
    cut = how.get("cut_share")
    log(
        f"      replies: up to {tokens} tokens ({how['from']}"
        + (f"; {cut:.1%} of them are longer and cut" if cut else "")
        + ")"
    )
    return replace(req, config=req.config.with_changes(distill={"max_reply_tokens": tokens}))


def teacher_prompts(
    askable: list[Utterance], config: RunConfig, seed: int
) -> tuple[list[Utterance], int, str]:
    """(the prompts the responder answers for stage 2, what the per-intent quotas ask for, how
    they were chosen, for the log): each intent's quota, under the `reply_budget` ceiling."""
    quota = ReplyQuota(config.replies_per_intent, config.reply_share)
    wanted = wanted_prompts(askable, seed, quota)
    if not config.reply_budget:
        return [], wanted, " (--reply-budget 0: the teacher writes none)"
    prompts = sample_prompts(askable, config.reply_budget, seed, quota)
    how = f" ({quota.share:.0%} of each intent's, at least {quota.floor})" if askable else ""
    if len(prompts) < wanted:
        how += f"; cut by --reply-budget {config.reply_budget} from the quotas' {wanted}"
    return prompts, wanted, how


def fit_encoder_teacher(
    req: DistillRequest, data: RunData, log: Log, device: torch.device | None = None
) -> tuple[EncoderTeacher, SourceTokenizer]:
    """[2/7] The encoder teacher (fine-tuned once per work folder, on `device`, default the
    CPU) and the source tokenizer."""
    cfg = req.config
    log("[2/7] encoder teacher")
    teacher = encoder_teacher(
        req.work_dir,
        data.stage1_rows,
        context_turns=cfg.context_turns,
        epochs=cfg.teacher_epochs,
        lr=cfg.teacher_lr,
        seed=cfg.distill.seed,
        max_minutes=cfg.teacher_max_minutes,
        log=log,
        dev=data.calibration,  # early stopping; never the rows the run reports on
        patience=cfg.teacher_patience,
        device=device or torch.device("cpu"),
        base=cfg.encoder_teacher,
        data_dir=Settings().data_dir,
    )
    source = SourceTokenizer(
        locate_minilm() / "tokenizer.json",
        max_tokens=cfg.distill.max_source_tokens,
        context_turns=cfg.context_turns,
    )
    return teacher, source


def prepare_student(
    req: DistillRequest,
    data: RunData,
    teacher: EncoderTeacher,
    source: SourceTokenizer,
    log: Log,
) -> RunState:
    """[3/7] Teacher replies, the decoder vocabulary and the student, ready for stage 1."""
    cfg = req.config.distill
    meta = json.loads((req.responder_dir / META_FILE).read_text(encoding="utf-8"))
    bos, eos = int(meta["bos_token_id"]), int(meta["eos_token_id"])
    pad_id = int(meta["pad_token_id"]) if meta.get("pad_token_id") is not None else eos
    decoder_tokenizer = Tokenizer.from_file(str(req.responder_dir / "tokenizer.json"))
    knowledge_path = req.knowledge_path
    if knowledge_path is None and req.data_path is None and req.snapshot_dir is None:
        knowledge_path = demo_knowledge_path()  # the demo shop's own policies
    knowledge = load_knowledge(knowledge_path) if knowledge_path else None
    responder = _responder(req, meta)

    def decoder_tokenize(text: str) -> list[int]:
        return list(decoder_tokenizer.encode(text, add_special_tokens=False).ids)

    covered = intents_with_references(data.train, cfg.teacher_skip_references)
    askable = [r for r in data.train if r.intent not in covered]
    prompts, wanted, how = teacher_prompts(askable, req.config, cfg.seed)
    log(
        f"[3/7] teacher replies: {len(prompts)} prompts{how}"
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
        data.champion,
        source,
        decoder_tokenize,
        max_source=cfg.max_source_tokens,
        max_reply=cfg.max_reply_tokens,
    )
    # under torchrun rank 0 asks the teacher, the other ranks receive its replies
    replies, cache_stats, best_report = ranks.from_main(
        lambda: (
            *cached_replies(
                responder,
                prompts,
                knowledge,
                req.teacher_cache,
                req.work_dir,
                max_new_tokens=cfg.max_reply_tokens,
                top_k=req.config.top_k,
                log=log,
                best=(selector, best_report) if selector is not None else None,
            ),
            best_report,
        )
    )
    raw_examples = reply_examples(
        replies,
        [r for r in data.train if r.reply or r.rejected],
        source,
        decoder_tokenize,
        eos_id=eos,
        max_reply_tokens=cfg.max_reply_tokens,
        seed=cfg.seed,
    )
    # the calibration rows' references: what stage 2 stops early on (never the report rows)
    raw_dev = reply_examples(
        [],
        [r for r in data.calibration if r.reply],
        source,
        decoder_tokenize,
        eos_id=eos,
        max_reply_tokens=cfg.max_reply_tokens,
        seed=cfg.seed,
    )
    first = champion_vocab(data.champion) if data.champion is not None else []
    vocab = build_decoder_vocab(  # held-out tokens too: the dev loss must be able to score them
        [*first, pad_id, bos, eos],
        [e.reply_ids for e in [*raw_examples, *raw_dev]],
        [[ids for ids, _ in e.teacher_topk or []] for e in raw_examples],
    )
    split = reply_dev(
        [_to_student(e, vocab) for e in raw_examples],
        [_to_student(e, vocab) for e in raw_dev],
        cfg.seed,
    )
    log(f"      decoder vocabulary: {vocab.size} of the responder's {meta['vocab_size']} tokens")
    log(
        f"      stage 2 stops early on {len(split.dev)} held-out replies ({split.where})"
        if split.dev
        else "      stage 2 runs all its epochs: too few replies to hold some out"
    )
    # the student reads MiniLM's tokens (`source`), whichever encoder teacher it learns from
    enc_vocab = source.tokenizer.get_vocab_size()
    student = _student(cfg, len(data.labels), enc_vocab, vocab, (bos, eos, pad_id))
    state = RunState(
        data=data,
        teacher=teacher,
        source=source,
        responder=responder,
        responder_dir=req.responder_dir,
        decoder_tokenizer=decoder_tokenizer,
        knowledge=knowledge,
        vocab=vocab,
        stage2_examples=split.train,
        stage2_dev=split.dev,
        stage2_dev_source=split.where,
        student=student,
        prompts=len(prompts),
        bounded=bool(req.config.reply_budget) and len(prompts) < wanted,
        wanted=wanted,
        cache_stats=cache_stats,
        best_of_n=best_report,
    )
    _initialise(state, cfg, log)
    return state


def _to_student(example: ReplyExample, vocab: DecoderVocab) -> ReplyExample:
    """`example` with its reply and top-k ids in the student's decoder vocabulary."""
    return replace(
        example,
        reply_ids=vocab.to_student(example.reply_ids),
        teacher_topk=vocab.map_topk(example.teacher_topk) if example.teacher_topk else None,
    )


def _responder(req: DistillRequest, meta: dict[str, Any]) -> Responder:
    """The teacher that writes replies: the request's, else the prepared one in this process
    (on the run's device). Under torchrun only rank 0 asks it; the others get a stand-in that
    refuses (they receive rank 0's replies)."""
    if not distributed.is_main():
        teacher_id = req.responder.teacher_id if req.responder is not None else "local"
        return ranks.NotOnThisRank(str(meta.get("teacher_id", teacher_id)))
    if req.responder is not None:
        return req.responder
    return LocalResponder(req.responder_dir, device=ranks.run_device(req.config.device))


def _initialise(state: RunState, cfg: DistillConfig, log: Log) -> None:
    """The student's first weights: the champion's (warm start), else the teacher's layers."""
    data, student = state.data, state.student
    skipped = data.warm_start_skipped
    state.metrics = {"warm_start": {"skipped": skipped}} if skipped else {}
    if data.champion is not None:
        try:
            state.metrics["warm_start"] = warm = warm_start(
                student, data.champion, data.labels, list(state.vocab.ids)
            )
            rows = data.stage1_rows
            by_label = {
                k: state.source.ids([r.turns() for r in rows if r.intent == k]) for k in data.labels
            }
            warm["imprinted"] = imprint_new_intents(
                student, data.labels, warm["intents_added"], by_label
            )
            log(f"      warm start: {json.dumps(warm)}")
        except WarmStartError as exc:  # the student is untouched: train it from the teacher
            log(f"      no warm start: {exc}")
            state.metrics["warm_start"] = {"skipped": str(exc)}
            data.champion = None
    if data.champion is None and cfg.init == "teacher_layers":
        init_student_encoder_from_teacher(
            student, _layers_to_copy(state.teacher, student.cfg.enc_hidden), cfg.enc_layers
        )
    init = "champion" if data.champion is not None else cfg.init
    log(f"      student: {student.num_parameters()['total'] / 1e6:.1f}M parameters ({init})")


def _layers_to_copy(teacher: EncoderTeacher, hidden: int) -> dict[str, torch.Tensor]:
    """The weights the student's encoder starts from: the fine-tuned teacher's where it is
    MiniLM (the student's shapes and tokenizer), else pretrained MiniLM's (an MPNet teacher is
    768 wide with another vocabulary: the student learns from its outputs only)."""
    if teacher.model_type == "bert" and teacher.hidden_size == hidden:
        return teacher.teacher_state_dict()
    return load_encoder(locate_minilm()).teacher_state_dict()


def _train_and_heldout(req: DistillRequest, log: Log) -> tuple[list[Utterance], list[Utterance]]:
    if req.snapshot_dir is not None:
        log(f"      snapshot {req.snapshot_dir.name[:12]}: its train and fixed held-out split")
        return load_snapshot(req.snapshot_dir)
    seed = req.config.distill.seed
    if req.data_path is None:
        log("      no --data: using the built-in demo corpus (an online shop)")
        rows = demo_utterances(seed=seed, with_replies=True)
    else:
        rows = load_utterances(req.data_path, split=req.config.split)
    return stratified_split(rows, req.config.dev_fraction, seed)


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
