"""Steps 4-7 of a distillation run (`distill_worker.pipeline`), over the prepared `RunState`.

[4/7] train_encoder   stage 1 (feature / intent KD / task CE), then the intent confidence
                      calibrated on the held-out split
[5/7] train_decoder   stage 2 (decoder + reward head)
[6/7] evaluate        held-out metrics (`stages.run_eval.evaluate_run`) and the run's figures
[7/7] export          the parity-checked bundle (`stages.export_onnx.export_bundle`)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from bundle_runtime.manifest import Manifest
from distill_worker import ranks
from distill_worker.budgets import run_budgets, stage_budget, teacher_budget
from distill_worker.config import DistillConfig
from distill_worker.data.approved_seeds import central_replies
from distill_worker.data.building import intent_examples
from distill_worker.run_request import DistillRequest
from distill_worker.run_state import RunState
from distill_worker.stages.agent_eval import agent_reply_figures
from distill_worker.stages.decoder_stage import DecoderStage
from distill_worker.stages.encoder_stage import EncoderStage
from distill_worker.stages.export_onnx import export_bundle
from distill_worker.stages.run_eval import (
    calibrate,
    calibrate_handoff,
    evaluate_run,
    handoff_score,
    handoff_threshold,
)

Log = Callable[[str], None]
AGENT_EVAL_ROWS = 64  # agent-answered contexts the evaluation replies to (candidate, champion)


def train_encoder(req: DistillRequest, state: RunState, log: Log) -> None:
    """[4/7] Stage 1 on the train rows and their variants; calibration on the held-out rows."""
    data = state.data
    # the teacher's labels (logits, features): rank 0 computes them, the other ranks receive them
    examples = ranks.from_main(
        lambda: intent_examples(data.stage1_rows, data.labels, state.source, state.teacher)
    )
    # early stopping on the calibration rows (gold labels only), never on the report rows
    dev = intent_examples(data.calibration, data.labels, state.source, None)
    log(f"[4/7] stage 1 (encoder): {len(examples)} examples, {len(dev)} to stop early on")
    stage1 = EncoderStage(
        state.student,
        req.config.distill,
        examples,
        state.teacher.hidden_size,
        req.work_dir / "logs" / "stage1.jsonl",
        req.work_dir / "stage1",
        dev=dev,
        precision=state.precision,
    )
    stage1.setup()
    metrics = stage1.train()
    stage1.cleanup()
    _note_stop(metrics, "stage 1", "--stage1-max-minutes", log)
    state.stage_metrics["stage1"] = _plain(metrics)
    temperature = calibrate(state.student, state.source, data.calibration, data.labels)
    log(
        f"      intent confidence calibrated on the calibration rows: temperature {temperature:.3f}"
    )
    if req.config.handoff_precision is not None:
        state.handoff = calibrate_handoff(
            state.student,
            state.source,
            data,
            target_precision=req.config.handoff_precision,
            oos_prior=req.config.oos_prior,
            pseudo_oos=req.config.pseudo_oos,
            seed=req.config.distill.seed,
            score=req.config.handoff_score,
        )
    if state.handoff is not None:
        h = state.handoff
        log(
            f"      handoff threshold {h.threshold:.3f} ({h.score}): {h.precision:.1%} of answers "
            f"right (target {h.target_precision:.0%}), {h.coverage:.1%} of in-scope rows answered"
            + (f", {h.oos_answered:.1%} of {h.oos_rows} out-of-scope rows" if h.oos_rows else "")
            + (f" ({h.pseudo_oos_rows} of them pseudo-out-of-scope)" if h.pseudo_oos_rows else "")
            + ("" if h.met_target else "; the target was not reached")
        )
        if h.separation:
            log(
                "      handoff score "
                + h.score
                + ": in-scope vs negative calibration rows, AUROC "
                + ", ".join(f"{name} {auroc:.3f}" for name, auroc in h.separation.items())
            )


def train_decoder(req: DistillRequest, state: RunState, log: Log) -> None:
    """[5/7] Stage 2: the decoder and the reward head on the teacher replies and references."""
    log(f"[5/7] stage 2 (decoder + reward): {len(state.stage2_examples)} examples")
    stage2 = DecoderStage(
        state.student,
        req.config.distill,
        state.stage2_examples,
        req.work_dir / "logs" / "stage2.jsonl",
        req.work_dir / "stage2",
        precision=state.precision,
        dev=state.stage2_dev,
    )
    stage2.setup()
    metrics = stage2.train()
    stage2.cleanup()
    _note_stop(metrics, "stage 2", "--stage2-max-minutes", log)
    metrics["dev_replies_from"] = state.stage2_dev_source
    state.stage_metrics["stage2"] = _plain(metrics)
    cfg = req.config
    state.stage_metrics["budgets"] = run_budgets(
        teacher_budget(state.teacher.meta.get("finetune"), cfg),
        stage_budget(
            state.stage_metrics["stage1"], cfg.distill.stage1_epochs, cfg.distill.stage1_max_minutes
        ),
        stage_budget(metrics, cfg.distill.stage2_epochs, cfg.distill.stage2_max_minutes),
    )


def evaluate(req: DistillRequest, state: RunState, log: Log) -> None:
    """[6/7] Held-out metrics, and the run's own figures, into `state.metrics`."""
    log("[6/7] evaluating on the held-out split")
    data, metrics = state.data, state.metrics
    metrics |= evaluate_run(state, req.config, cache=req.teacher_cache, work_dir=req.work_dir)
    metrics |= state.stage_metrics  # stage1, stage2
    metrics["reply_budget"] = {
        "prompts": state.prompts,
        "bounded": state.bounded,
        "wanted": state.wanted,
        "ceiling": req.config.reply_budget,
        "per_intent_floor": req.config.replies_per_intent,
        "per_intent_share": req.config.reply_share,
    }
    metrics["teacher_cache"] = state.cache_stats.as_dict()
    metrics["best_of_n"] = state.best_of_n.as_dict()
    metrics["train_rows"], metrics["dev_rows"] = len(data.train), len(data.dev)
    metrics["reply_tokens"] = {
        "max": req.config.distill.max_reply_tokens,
        **({"chosen": data.reply_length} if data.reply_length else {"chosen": "config"}),
    }
    metrics["adversarial_rows"] = {kind: len(rows) for kind, rows in data.adversarial.items()}
    if req.snapshot_dir is not None:
        metrics["snapshot"] = {"path": str(req.snapshot_dir), "content_hash": req.snapshot_dir.name}
        agents = agent_reply_figures(
            state,
            req.snapshot_dir,
            max_rows=AGENT_EVAL_ROWS,
            max_reply_tokens=req.config.distill.max_reply_tokens,
        )
        if agents is not None:  # how close it comes to what human agents answered
            metrics["agent_replies"] = agents
            log(
                f"      agent replies: chrF {agents['chrf_candidate']} (champion "
                f"{agents['chrf_champion']}) over {agents['rows']} agent-answered turns"
            )
    log("      " + json.dumps({k: metrics[k] for k in ("intent", "replies")}, default=str))


def export(req: DistillRequest, state: RunState, log: Log, started: float) -> Manifest:
    """[7/7] The bundle at `req.out_dir`, parity-checked on up to 8 held-out rows; `started`:
    the run's `time.monotonic()` at its start, for `metrics["wall_seconds"]`."""
    cfg = req.config.distill
    data, student, teacher = state.data, state.student, state.teacher
    version = req.model_version or _version_id(cfg)
    log(f"[7/7] exporting bundle {version} to {req.out_dir}")
    state.metrics["wall_seconds"] = round(time.monotonic() - started, 1)
    manifest = export_bundle(
        student,
        req.out_dir,
        model_version=version,
        intent_labels=data.labels,
        oos_label=data.oos_label,
        encoder_tokenizer_json=state.source.path,
        decoder_tokenizer_json=state.responder_dir / "tokenizer.json",
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
        context_turns=req.config.context_turns,
        handoff_threshold=handoff_threshold(state, req.config),
        handoff_score=handoff_score(state),
        metrics=state.metrics,
        run_id=str(req.run_id) if req.run_id else None,
        int8=req.config.int8,
        parity_samples=state.source.ids([r.turns() for r in (data.dev or data.train)[:8]]),
        decoder_vocab=list(state.vocab.ids),
        approved_seeds=central_replies(data.train, oos_label=data.oos_label),
    )
    log(f"      done in {state.metrics['wall_seconds']} s: {req.out_dir}")
    return manifest


def _note_stop(metrics: dict[str, Any], name: str, option: str, log: Log) -> None:
    if metrics.get("stop_reason") == "time_limit":
        log(
            f"      {name} stopped at its time cap after {metrics.get('step')} of "
            f"{metrics.get('total_steps')} steps (raise {option} to train longer)"
        )
    elif metrics.get("stop_reason") == "early_stop":
        early = metrics.get("early_stopping") or {}
        figure = "reply loss" if "best_dev_loss" in early else "accuracy"
        log(
            f"      {name} stopped early after epoch {metrics.get('epochs_run')}: no better "
            f"held-out {figure} for {early.get('patience')} epochs; epoch "
            f"{early.get('best_epoch')} kept"
        )


def _version_id(cfg: DistillConfig) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"v{stamp}-{hashlib.sha256(cfg.to_json().encode()).hexdigest()[:6]}"


def _plain(data: Any) -> Any:
    """Metrics dicts as plain JSON values."""
    return json.loads(
        json.dumps(data if not hasattr(data, "__dataclass_fields__") else asdict(data), default=str)
    )
