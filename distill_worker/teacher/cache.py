"""The teacher cache: outputs keyed by sha256 of (teacher id, prompt, parameters), in the store.

Why the feedback store (a `teacher_outputs` table, migration 0002) and not files: the workers of
one deployment already share that database, so an output paid for by any run, on any host, is a
hit for every later run; writes are transactional (a crashed run leaves whole rows, never a torn
file); and `INSERT .. ON CONFLICT DO NOTHING` makes two workers labelling the same prompt at once
harmless. Outputs are small JSON (a reply and its top-k logprobs: tens of KB), well within what
a row holds. Without a configured store the pipeline uses an SQLite file in the run's folder,
which still makes a restarted run resume where it stopped.

The key covers everything that determines the output: the teacher id (which must change when
the model behind it changes), the prompt exactly as sent (rendered chat messages, knowledge
included), and the request parameters (what is asked for, max tokens, top-k, temperature, seed).
`CacheStats` counts hits and misses so a run can put them in its metrics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from distill_worker.teacher.base import TeacherSetupError
from feedback import migrate
from feedback.db import make_engine, make_session_factory, session_scope
from feedback.errors import SchemaOutOfDate
from feedback.repositories.teacher_outputs import NewTeacherOutput, TeacherOutputRepository
from feedback.settings import Settings

P = TypeVar("P")
Output = dict[str, Any]


def cache_key(teacher_id: str, prompt: Any, params: Mapping[str, Any]) -> str:
    """sha256 hex of a canonical JSON of (teacher id, prompt, parameters).

    Canonical: sorted keys, no whitespace, UTF-8, so equal inputs give equal keys in any process.
    `prompt` and `params` must be JSON values (lists, dicts, strings, numbers, booleans, None).
    """
    canonical = json.dumps(
        {"teacher": teacher_id, "prompt": prompt, "params": dict(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    """Hits and misses of one labelling pass; `stored` counts rows this pass added."""

    hits: int = 0
    misses: int = 0
    stored: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "stored": self.stored}


class TeacherCache:
    """Teacher outputs in the feedback store; each chunk of new outputs commits on its own."""

    def __init__(
        self, session_factory: sessionmaker[Session], *, owned_engine: Engine | None = None
    ) -> None:
        self._sessions = session_factory
        self._owned_engine = owned_engine

    @classmethod
    def in_sqlite_file(cls, path: Path) -> TeacherCache:
        """A cache of its own in an SQLite file (migrated here), for runs without a store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{path.resolve()}")
        migrate.upgrade(engine)
        return cls(make_session_factory(engine), owned_engine=engine)

    @classmethod
    def in_store(cls, settings: Settings) -> TeacherCache:
        """The configured feedback store: the embedded SQLite file is migrated here (as `serve`
        does); a server database must already be at the code's revision."""
        engine = make_engine(settings)
        if settings.database_url.startswith("sqlite"):
            migrate.upgrade(engine)
        try:
            migrate.require_head(engine)
        except SchemaOutOfDate as exc:
            engine.dispose()
            raise TeacherSetupError("teacher-cache", exc.problem, exc.action) from None
        return cls(make_session_factory(engine), owned_engine=engine)

    def close(self) -> None:
        """Release the engine this cache opened itself (none when given a session factory)."""
        if self._owned_engine is not None:
            self._owned_engine.dispose()

    def lookup(self, keys: Sequence[str]) -> dict[str, Output]:
        with session_scope(self._sessions) as session:
            return TeacherOutputRepository(session).get_many(keys)

    def store(self, teacher_id: str, kind: str, outputs: Mapping[str, Output]) -> int:
        """Keep new outputs (committed now); returns how many keys were new."""
        rows = [NewTeacherOutput(k, teacher_id, kind, v) for k, v in outputs.items()]
        if not rows:
            return 0
        with session_scope(self._sessions) as session:
            return TeacherOutputRepository(session).add_many(rows)

    def get_or_compute(
        self,
        teacher_id: str,
        kind: str,
        items: Sequence[P],
        prompt_of: Callable[[P], Any],
        params: Mapping[str, Any],
        compute: Callable[[list[P]], list[Output]],
        *,
        chunk: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[Output], CacheStats]:
        """One output per item, in order: stored ones read, the others computed and stored.

        `compute` gets up to `chunk` items and returns one JSON-able output per item; each chunk
        is committed before the next starts, so a run that stops part-way keeps what it paid for.
        `progress(done, total)` is called after each computed chunk (total = misses).
        """
        full = {**params, "kind": kind}
        keys = [cache_key(teacher_id, prompt_of(item), full) for item in items]
        found = self.lookup(keys)
        stats = CacheStats(hits=sum(1 for k in keys if k in found))
        todo = [(k, item) for k, item in zip(keys, items, strict=True) if k not in found]
        pending: dict[str, P] = {}
        for k, item in todo:
            pending.setdefault(k, item)  # the same prompt twice is asked once
        stats.misses = len(pending)
        order = list(pending.items())
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            outputs = compute([item for _, item in part])
            if len(outputs) != len(part):
                raise ValueError(f"compute returned {len(outputs)} outputs for {len(part)} items")
            fresh = {k: out for (k, _), out in zip(part, outputs, strict=True)}
            stats.stored += self.store(teacher_id, kind, fresh)
            found.update(fresh)
            if progress is not None:
                progress(min(start + chunk, len(order)), len(order))
        return [found[k] for k in keys], stats
