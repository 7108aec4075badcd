"""What the loop's code needs in a worker process: the settings, and a session factory made
in this process (engines are not shared across a fork), plus the run configs per trigger."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from distill_worker.config import DistillConfig
from distill_worker.run_config import RunConfig
from feedback.db import make_engine, make_session_factory
from feedback.models import RunTrigger
from feedback.settings import Settings


@dataclass
class LoopContext:
    settings: Settings
    _factory: sessionmaker[Session] | None = field(default=None, repr=False)
    _pid: int = field(default=0, repr=False)

    def sessions(self) -> sessionmaker[Session]:
        if self._factory is None or self._pid != os.getpid():
            self._factory = make_session_factory(make_engine(self.settings))
            self._pid = os.getpid()
        return self._factory

    @property
    def runs_dir(self) -> Path:
        """Work folders of runs (stage checkpoints, teacher folder), one per run id."""
        return self.settings.data_dir / "runs"

    @property
    def snapshots_dir(self) -> Path:
        return self.settings.data_dir / "snapshots"

    def run_settings(self, trigger: RunTrigger) -> RunConfig:
        """The RunConfig of a run opened by `trigger`, from the worker's settings (fields left
        unset there keep RunConfig's defaults, the time caps included: `teacher_max_minutes`,
        and `distill`'s stage caps). Latency runs train a compression-oriented
        student (the `compression` overrides) and export INT8. The run's own reply-quality
        check decodes at most 8 held-out replies (the gate decodes `gate.eval_replies`)."""
        worker = self.settings.worker
        distill: dict[str, Any] = dict(worker.distill)
        if trigger is RunTrigger.LATENCY:
            distill.update(worker.compression)
        knobs: dict[str, Any] = {
            "reply_budget": worker.reply_budget,
            "replies_per_intent": worker.replies_per_intent,
            "encoder_teacher": worker.encoder_teacher,
            "teacher_epochs": worker.teacher_epochs,
            "int8": True if trigger is RunTrigger.LATENCY else worker.int8,
            "handoff_score": worker.handoff_score,
        }
        knobs = {k: v for k, v in knobs.items() if v is not None}
        if worker.teacher_max_minutes is not None:  # 0: no cap
            knobs["teacher_max_minutes"] = worker.teacher_max_minutes or None
        from distill_worker.data.ood_corpus import default_ood_corpus  # sklearn: when asked

        # Unset: the data folder's corpus, where `chatdistill ood-corpus` put one.
        corpus = worker.ood_corpus or default_ood_corpus(self.settings.data_dir)
        if corpus.is_file() or worker.ood_corpus is not None:
            knobs["ood_corpus"] = str(corpus.resolve())
        if worker.device is not None:
            knobs["device"] = worker.device
        return RunConfig(
            distill=DistillConfig.from_dict(distill),
            eval_replies=min(worker.gate.eval_replies, 8),
            **knobs,
        )

    def run_config(self, trigger: RunTrigger) -> dict[str, Any]:
        """`run_settings` as stored on the run's row, validated now, so that a bad setting
        fails the opener rather than a worker hours later; `compression` tells the train step
        not to warm-start the smaller student from the champion."""
        return {
            **self.run_settings(trigger).to_row(),
            "compression": trigger is RunTrigger.LATENCY,
        }
