"""The executing task's lease on its run: a thread renews `heartbeat_at` while the run's steps
work, and notices when the run was cancelled or taken over, so that training stops at its next
check (`stopped`) and the step loop raises at its next boundary (`check`)."""

from __future__ import annotations

import logging
import threading
import uuid

from distill_worker.loop.context import LoopContext
from distill_worker.loop.errors import LeaseLost, RunCancelled
from feedback.db import session_scope
from feedback.models import DistillRun
from feedback.repositories.runs import RunRepository

logger = logging.getLogger(__name__)


class Lease:
    def __init__(self, ctx: LoopContext, run_id: uuid.UUID, owner: str) -> None:
        self.ctx, self.run_id, self.owner = ctx, run_id, owner
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._cancelled = False
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        interval = self.ctx.settings.worker.heartbeat_s
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception:  # a database hiccup: the next beat tries again
                logger.exception("heartbeat of run %s failed", self.run_id)
            if self._lost.is_set():
                return

    def renew(self) -> None:
        with session_scope(self.ctx.sessions()) as session:
            if RunRepository(session).heartbeat(self.run_id, self.owner):
                return
            run = session.get(DistillRun, self.run_id)
            self._cancelled = bool(run is not None and run.cancel_requested)
        self._lost.set()

    @property
    def stopped(self) -> bool:
        """Whether the run must stop now (cancelled, or another task holds it)."""
        return self._lost.is_set()

    def check(self) -> None:
        """Raise at a step boundary if the run must stop."""
        self.renew()
        if self._lost.is_set():
            if self._cancelled:
                raise RunCancelled(f"run {self.run_id} was cancelled")
            raise LeaseLost(f"run {self.run_id} is held by another task now")
