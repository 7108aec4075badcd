"""The two teachers of one run, with their results kept so a restarted run does not pay twice.

* `encoder_teacher`: all-MiniLM-L6-v2 (or all-mpnet-base-v2, `base="mpnet"`) fine-tuned on
  the run's labelled training rows (early stopping on the run's calibration rows), saved in the
  work folder and reused when the labels and the base model are the same; its fine-tune report
  (epochs, best epoch, stop reason, seconds) is in `teacher.meta["finetune"]`, saved with it.
* `cached_replies`: the responder's grounded replies (with top-k token logprobs) through the
  teacher cache; only prompts the cache has not seen are asked. With a best-of-n selector the
  reply of each prompt is the champion reward head's pick of n variants (`best_of_n.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bundle_runtime.source import format_source
from distill_worker.data.best_of_n import BestOfN, BestOfNReport, label_best_of_n
from distill_worker.data.building import TeacherReply
from distill_worker.data.labelling import label_replies
from distill_worker.data.loaders import Utterance
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import CacheStats, TeacherCache
from distill_worker.teacher.encoder import EncoderTeacher, load_encoder, locate_minilm
from distill_worker.teacher.grounding import Knowledge

Log = Callable[[str], None]
# RunConfig.encoder_teacher -> (the pretrained model, its transformers model_type)
BASE_MODELS = {"minilm": ("all-MiniLM-L6-v2", "bert"), "mpnet": ("all-mpnet-base-v2", "mpnet")}


def teacher_epoch_line(figures: dict[str, float], epochs: int) -> str:
    """One epoch of the teacher's fine-tune, for the run's log."""
    line = f"epoch {figures['epoch']:g}/{epochs}: train loss {figures['loss']:.3f}"
    if "dev_accuracy" in figures:
        line += f", calibration accuracy {figures['dev_accuracy']:.3f}"
    return line + f" ({figures['seconds']:.0f} s)"


def encoder_teacher(
    work_dir: Path,
    train: list[Utterance],
    *,
    context_turns: int,
    epochs: int,
    lr: float,
    seed: int,
    max_minutes: float | None,
    log: Log,
    dev: Sequence[Utterance] = (),
    patience: int = 2,
    device: torch.device | str = "cpu",
    base: str = "minilm",
    data_dir: Path | None = None,
) -> EncoderTeacher:
    """`dev`: labelled rows to stop early on (none: every epoch); `max_minutes`: a time cap;
    `device`: where the teacher is loaded and fine-tuned (its outputs come back on the CPU);
    `base`: "minilm" or "mpnet" (prepared once under `data_dir`/teachers, see `mpnet_package`)."""
    if base not in BASE_MODELS:
        raise ValueError(f"unknown encoder teacher {base!r}: one of {sorted(BASE_MODELS)}")
    name, model_type = BASE_MODELS[base]
    folder = work_dir / "encoder_teacher"
    labels = sorted({r.intent for r in train if r.intent})
    if (folder / "labels.json").is_file():
        teacher = EncoderTeacher.load(folder, device=device)
        if sorted(teacher.labels) == labels and teacher.model_type == model_type:
            log(f"      encoder teacher: reusing the fine-tuned one in {folder}")
            return teacher
    labelled = [r for r in train if r.intent]  # unlabelled rows are for the student's KD
    log(f"      encoder teacher: fine-tuning {name} on {len(labelled)} rows ({device})")
    if base == "mpnet":
        from distill_worker.teacher.mpnet_package import prepare_mpnet, prepared_mpnet_dir

        if data_dir is None:
            raise ValueError("the MPNet encoder teacher needs the data folder it is prepared in")
        pretrained = prepare_mpnet(prepared_mpnet_dir(data_dir))
    else:
        pretrained = locate_minilm()
    # A distillation job owns its machine: the teacher uses every torch thread (2 were 1.7-2x
    # faster than 1 here when nothing else ran; the serving default stays 1).
    teacher = load_encoder(pretrained, threads=torch.get_num_threads(), device=device)
    held = [r for r in dev if r.intent]
    result = teacher.finetune(
        [format_source(r.turns(), context_turns) for r in labelled],
        [r.intent or "" for r in labelled],
        epochs=epochs,
        lr=lr,
        seed=seed,
        max_minutes=max_minutes,
        dev=(
            [format_source(r.turns(), context_turns) for r in held],
            [r.intent or "" for r in held],
        ),
        patience=patience,
        on_epoch=lambda figures: log(f"      encoder teacher {teacher_epoch_line(figures, epochs)}"),
    )
    log("      " + json.dumps(result, default=str))
    if result["stop_reason"] == "time_limit":
        log(
            f"      the encoder teacher stopped at its {max_minutes:g}-minute cap in epoch "
            f"{result['epochs_run']} of {epochs} (raise --teacher-max-minutes to train longer)"
        )
    elif result["stop_reason"] == "early_stop":
        log(
            f"      the encoder teacher stopped early after epoch {result['epochs_run']} of "
            f"{epochs}: no better held-out accuracy for {patience} epochs; epoch "
            f"{result['best_epoch']} kept"
        )
    teacher.save(folder)
    return teacher


def open_cache(cache: TeacherCache | None, work_dir: Path) -> tuple[TeacherCache, bool]:
    """The given cache, or an SQLite one in the work folder (second value: close it after)."""
    if cache is not None:
        return cache, False
    return TeacherCache.in_sqlite_file(work_dir / "teacher_cache.db"), True


def cached_replies(
    responder: Responder,
    prompts: list[Utterance],
    knowledge: Knowledge | None,
    cache: TeacherCache | None,
    work_dir: Path,
    *,
    max_new_tokens: int,
    top_k: int,
    log: Log,
    best: tuple[BestOfN, BestOfNReport] | None = None,
) -> tuple[list[TeacherReply], CacheStats]:
    """Teacher replies for the prompts through the teacher cache: only new prompts are asked.
    `best`: pick each reply from n variants with the champion's reward head (fills the report)."""
    store, owned = open_cache(cache, work_dir)
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-6)
        log(f"      {done}/{total} replies ({rate:.2f}/s)")

    try:
        if best is not None:
            replies, stats = label_best_of_n(
                responder,
                prompts,
                knowledge,
                store,
                *best,
                max_new_tokens=max_new_tokens,
                top_k=top_k,
                progress=progress,
            )
            report = best[1]
            log(
                f"      best of {report.n}: the reward head of {report.scored_by} kept the greedy "
                f"reply for {report.chose_greedy} of {report.prompts} prompts (mean reward gain "
                f"{report.mean_reward_gain:+.3f})"
            )
        else:
            replies, stats = label_replies(
                responder,
                prompts,
                knowledge,
                store,
                max_new_tokens=max_new_tokens,
                top_k=top_k,
                progress=progress,
            )
    finally:
        if owned:
            store.close()
    log(f"      teacher cache: {stats.hits} hits, {stats.misses} asked")
    return replies, stats


def plain(data: Any) -> Any:
    """Metrics as plain JSON values."""
    return json.loads(json.dumps(data, default=str))
