"""`BundleWatcher`: keeps this API process serving what the registry's aliases say.

Two triggers, one action. A model-change event on Redis (`feedback.events`) says "look now";
a poll of the store every `events.poll_interval_s` catches what pub/sub dropped or what was
moved while Redis was down. Either way `sync` re-reads the `production` and `canary` aliases
and, where one differs from what is loaded, verifies and loads that bundle beside the current
one and swaps (`ReplyEngine.load`): requests in flight finish on the model they started with.

A bundle that fails to load is logged once as an error and the old model keeps serving; the
watcher does not retry that same version on every poll, only when an event names it again.
A process started with `serving.bundle_dir` serves that folder and does not watch; with
`canary.share` 0 the `canary` alias is not loaded at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from bundle_runtime.manifest import BundleError
from chat_api.runtime.serving import LoadedModel, ReplyEngine, bundle_path
from feedback.db import session_scope
from feedback.events import model_changes
from feedback.repositories.model_versions import CANARY, PRODUCTION, ModelVersionRepository
from feedback.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    version_id: str
    bundle_uri: str
    checksum: str


@dataclass(frozen=True)
class Targets:
    production: Target | None
    canary: Target | None  # None also when the canary alias points at the production version


class BundleWatcher:
    def __init__(
        self, engine: ReplyEngine, factory: sessionmaker[Session], settings: Settings
    ) -> None:
        self.engine = engine
        self.factory = factory
        self.settings = settings
        self.subscribed = asyncio.Event()  # set while the Redis subscription is live
        self.swaps = 0  # models swapped in by this watcher (tests, logs)
        self.failures = 0  # bundles refused by this watcher
        self._failed: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pinned(self) -> bool:
        return self.engine.options.bundle_dir is not None

    async def start(self) -> None:
        """Sync once (the canary is loaded here), then poll, and listen when Redis is set."""
        if self.pinned:
            logger.info("serving a fixed bundle folder; not following the registry's aliases")
            return
        await self._guarded_sync("startup")
        self._tasks.append(asyncio.create_task(self._poll(), name="bundle-poll"))
        if self.settings.redis.url:
            self._tasks.append(asyncio.create_task(self._listen(), name="bundle-events"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def sync(self, cause: str, *, retry_failed: bool = False) -> bool:
        """Load whatever the aliases point at now, if it differs; -> whether anything swapped.
        Raises what the store raises (callers in the loops log it)."""
        async with self._lock:
            if retry_failed:
                self._failed.clear()
            targets = await run_in_threadpool(self._read_targets)
            swapped = await self._follow(targets.production, canary=False, cause=cause)
            no_split = self.engine.options.canary_share <= 0.0  # canary off: don't load it
            if targets.canary is None or targets.production is None or no_split:
                self.engine.clear_canary()
            else:
                swapped = await self._follow(targets.canary, canary=True, cause=cause) or swapped
            return swapped

    # ------------------------------------------------------------------------------ internals

    def _read_targets(self) -> Targets:
        with session_scope(self.factory) as session:
            repo = ModelVersionRepository(session)
            found = {alias: repo.resolve_alias(alias) for alias in (PRODUCTION, CANARY)}
            prod, canary = (
                Target(row.id, row.bundle_uri, row.checksum) if row is not None else None
                for row in (found[PRODUCTION], found[CANARY])
            )
        if canary is not None and prod is not None and canary.version_id == prod.version_id:
            canary = None  # canary == champion: no split
        return Targets(production=prod, canary=canary)

    async def _follow(self, target: Target | None, *, canary: bool, cause: str) -> bool:
        slot = CANARY if canary else PRODUCTION
        loaded: LoadedModel | None = self.engine.canary if canary else self.engine.current
        if target is None or (loaded is not None and loaded.version_id == target.version_id):
            return False
        key = (target.version_id, target.checksum)
        if key in self._failed:
            return False
        try:
            folder = bundle_path(target.bundle_uri)
            await run_in_threadpool(
                self.engine.load, folder, target.version_id, checksum=target.checksum,
                canary=canary,
            )  # fmt: skip
        except Exception as exc:  # BundleError, or ONNX Runtime / tokenizers' own types
            self._failed.add(key)
            self.failures += 1
            detail = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
            logger.error(
                "cannot serve %s %s (%s): %s; still serving %s",
                slot,
                target.version_id,
                cause,
                detail,
                loaded.version_id if loaded else "nothing",
            )
            return False
        self.swaps += 1
        logger.info(
            "hot-swapped %s to %s (was %s; %s)",
            slot,
            target.version_id,
            loaded.version_id if loaded else "none",
            cause,
        )
        return True

    async def _guarded_sync(self, cause: str, *, retry_failed: bool = False) -> None:
        try:
            await self.sync(cause, retry_failed=retry_failed)
        except Exception as exc:  # the store is down: keep serving, try again next time
            logger.warning("could not read the model aliases (%s): %s", cause, exc)

    async def _poll(self) -> None:
        interval = self.settings.events.poll_interval_s
        while True:
            await asyncio.sleep(interval)
            await self._guarded_sync("poll")

    async def _listen(self) -> None:
        async for change in model_changes(self.settings, ready=self.subscribed):
            cause = f"event {change.alias} -> {change.version_id or 'cleared'} from {change.origin}"
            await self._guarded_sync(cause, retry_failed=True)
