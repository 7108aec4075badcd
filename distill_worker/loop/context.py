"""What the loop's code needs in a worker process: the settings, and a session factory made
in this process (engines are not shared across a fork), plus the run configs per trigger."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from distill_worker.config import DistillConfig
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

    def run_config(self, trigger: RunTrigger) -> dict[str, Any]:
        """The DistillConfig (as JSON) of a run opened by `trigger`, validated now, so that a
        bad setting fails the opener rather than a worker hours later. Latency runs train a
        compression-oriented student (the `compression` overrides) and export INT8."""
        worker = self.settings.worker
        fields: dict[str, Any] = dict(worker.distill)
        if trigger is RunTrigger.LATENCY:
            fields.update(worker.compression)
        config = DistillConfig.from_dict(fields)
        return {
            "distill": asdict(config),
            "int8": worker.int8 or trigger is RunTrigger.LATENCY,
            "compression": trigger is RunTrigger.LATENCY,
        }
