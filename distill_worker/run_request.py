"""What a caller asks of one distillation run (`DistillRequest`) and what it gets back
(`DistillResult`). The request holds paths, services and hooks; every knob of the training is
in its `RunConfig`. Both are re-exported by `distill_worker.pipeline`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundle_runtime.manifest import Manifest
from distill_worker.run_config import RunConfig
from distill_worker.teacher.base import Responder
from distill_worker.teacher.cache import TeacherCache


@dataclass(frozen=True)
class DistillRequest:
    out_dir: Path  # the bundle folder to write (must not exist)
    work_dir: Path  # the run's folder: teacher, checkpoints, logs, teacher replies
    responder_dir: Path  # a prepared responder (chatdistill teacher prepare)
    config: RunConfig
    data_path: Path | None = None  # None: the built-in demo corpus (ignored with snapshot_dir)
    knowledge_path: Path | None = None  # company policies for grounded teacher replies
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
