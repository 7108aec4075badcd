"""The reply engine the API uses: the deployed `OnnxStudent`, its version id, atomic swaps.

`load` builds the new runtime beside the current one and then swaps one reference: a call in
flight keeps the object it started with, later calls get the new one, nothing is dropped.
Every reply goes through the batcher (`chat_api.batching.loop.Batcher`), which binds each
request to `current` when it is submitted, so in-flight requests finish on their model.

Canary: a second model (`load(..., canary=True)`) answers `options.canary_share` of the
conversations, chosen by a hash of the conversation id so a conversation keeps its model;
`pick(route_key)` says which model a request gets.

Errors:
    NoModelLoaded       no bundle is loaded (the API answers 503 no_model_deployed)
    BundleError         `load` refused a bundle (checksum, parity, missing graphs);
                        from `bundle_runtime.manifest`
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy.orm import Session, sessionmaker

from bundle_runtime.handoff_score import MAX_SOFTMAX, HandoffScore, check_handoff
from bundle_runtime.manifest import BundleError, bundle_checksum, load_manifest
from bundle_runtime.onnx_student import OnnxStudent, Precision, Provider
from feedback.db import session_scope
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository

logger = logging.getLogger(__name__)


class NoModelLoaded(Exception):
    """No model is loaded; deploy a bundle (`chatdistill deploy BUNDLE_DIR`)."""


@dataclass(frozen=True)
class ServingOptions:
    """How chat_api serves bundles; `create_app` builds it from the settings."""

    bundle_dir: Path | None = None  # serve this bundle instead of the registry's production
    precision: Precision = "auto"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    handoff_threshold: float | None = None  # None: the bundle manifest's threshold and score
    handoff_score: HandoffScore = MAX_SOFTMAX  # what an overriding threshold is compared with
    decoding: Mapping[str, Any] = field(default_factory=dict)  # overrides of the manifest's
    guard_min_reward: float | None = None  # None: the bundle manifest's guard threshold
    provider: Provider = "cpu"
    canary_share: float = 0.0  # share of conversations the canary answers (when one is loaded)

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "int8"):
            raise ValueError("serving precision must be auto, fp32 or int8")
        if self.provider not in ("cpu", "cuda", "tensorrt"):
            raise ValueError("serving provider must be cpu, cuda or tensorrt")
        if self.intra_op_threads < 1 or self.inter_op_threads < 1:
            raise ValueError("serving thread counts must be at least 1")
        if self.handoff_threshold is not None:
            check_handoff(self.handoff_score, self.handoff_threshold)
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError("the canary share is a fraction, between 0 and 1")


@dataclass(frozen=True)
class LoadedModel:
    version_id: str
    student: OnnxStudent


def bundle_path(bundle_uri: str) -> Path:
    """A registry `bundle_uri` (a path or a file:// URI) -> the bundle folder."""
    parsed = urlparse(bundle_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme:
        raise BundleError(f"bundle URI {bundle_uri!r} is not a local folder (path or file://)")
    return Path(bundle_uri)


class ReplyEngine:
    def __init__(self, options: ServingOptions) -> None:
        self.options = options
        self._current: LoadedModel | None = None
        self._canary: LoadedModel | None = None
        self._load_lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        """The loaded model; read it once per request and use that object throughout."""
        return self._current

    @property
    def canary(self) -> LoadedModel | None:
        """The canary model, if one is loaded (it answers only with `canary_share` > 0)."""
        return self._canary

    def pick(self, route_key: str | None = None) -> LoadedModel | None:
        """The model that answers the conversation `route_key`: the canary for a stable
        `canary_share` of keys, the current model otherwise (and without a key)."""
        champion, canary = self._current, self._canary
        share = self.options.canary_share
        if canary is None or route_key is None or share <= 0.0 or champion is None:
            return champion
        return canary if route_bucket(route_key) < share else champion

    def is_serving(self, model: LoadedModel) -> bool:
        """Whether new requests can still be routed to `model` (else its batch may retire)."""
        return model is self._current or model is self._canary

    def clear_canary(self) -> None:
        previous, self._canary = self._canary, None
        if previous is not None:
            logger.info("canary %s retired; all traffic on the champion", previous.version_id)

    def load(
        self,
        bundle_dir: Path,
        version_id: str,
        *,
        checksum: str | None = None,
        canary: bool = False,
    ) -> LoadedModel:
        """Verify and load a bundle beside the current one, then swap (the canary slot with
        `canary`): `prepare` then `install`. Blocking: call it from a worker thread. Raises
        BundleError; the model in that slot then stays."""
        loaded = self.prepare(bundle_dir, version_id, checksum=checksum)
        self.install(loaded, canary=canary)
        return loaded

    def prepare(
        self, bundle_dir: Path, version_id: str, *, checksum: str | None = None
    ) -> LoadedModel:
        """Verify and load a bundle without serving it (`install` serves it). With `checksum`
        (the registry's), a bundle whose manifest changed since registration is refused.
        Blocking. Raises BundleError."""
        with self._load_lock:
            try:
                actual = bundle_checksum(bundle_dir) if checksum is not None else None
            except OSError as exc:
                raise BundleError(f"bundle {bundle_dir} cannot be read: {exc}") from exc
            if actual != checksum:
                raise BundleError(
                    f"bundle {bundle_dir} does not match the checksum registered for "
                    f"{version_id}; it changed after registration. Export a new version"
                )
            student = OnnxStudent(
                bundle_dir,
                precision=self.options.precision,
                intra_op_threads=self.options.intra_op_threads,
                inter_op_threads=self.options.inter_op_threads,
                handoff_threshold=self.options.handoff_threshold,
                handoff_score=self.options.handoff_score,
                provider=self.options.provider,
                decoding_overrides=self.options.decoding,
                guard_min_reward=self.options.guard_min_reward,
            )
        if student.model_version != version_id:
            logger.warning(
                "bundle %s calls itself %s; serving it as %s (the registry's id)",
                bundle_dir,
                student.model_version,
                version_id,
            )
        return LoadedModel(version_id=version_id, student=student)

    def install(self, loaded: LoadedModel, *, canary: bool = False) -> None:
        """Serve a prepared model (in the canary slot with `canary`): one reference swap."""
        with self._load_lock:
            if canary:
                previous, self._canary = self._canary, loaded
            else:
                previous, self._current = self._current, loaded
        logger.info(
            "serving %s %s from %s (%s, was %s)",
            "canary" if canary else "model",
            loaded.version_id,
            loaded.student.bundle_dir,
            loaded.student.precision,
            previous.version_id if previous else "none",
        )


def route_bucket(route_key: str) -> float:
    """A stable number in [0, 1) for a routing key (the same in every process and restart)."""
    digest = hashlib.sha256(route_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def load_deployed(engine: ReplyEngine, factory: sessionmaker[Session]) -> LoadedModel | None:
    """At startup: load `options.bundle_dir` if set, else the registry's production bundle.
    An unusable bundle is logged and skipped (the API then answers 503), never raised."""
    name = str(engine.options.bundle_dir)
    try:
        if engine.options.bundle_dir is not None:
            folder = engine.options.bundle_dir
            return engine.load(folder, load_manifest(folder).model_version)
        with session_scope(factory) as session:
            row = ModelVersionRepository(session).resolve_alias(PRODUCTION)
            if row is None:
                logger.warning(
                    "no %s model is registered; replies answer 503 until one is deployed "
                    "(`chatdistill deploy BUNDLE_DIR`)",
                    PRODUCTION,
                )
                return None
            name, uri, checksum = row.id, row.bundle_uri, row.checksum
        return engine.load(bundle_path(uri), name, checksum=checksum)
    except BundleError as exc:
        logger.error("not serving model %s: %s", name, exc)
    except Exception:  # ONNX Runtime and tokenizers raise their own types for broken files
        logger.exception("not serving model %s: the bundle failed to load", name)
    return None
