"""The steps of one run, in order: snapshot -> train -> evaluate (gate) -> register -> promote.

Each step is idempotent and returns a small JSON result that the executor checkpoints on the
run row; a redelivered task skips checkpointed steps and reuses their results. Long work (the
training) happens outside any transaction; it keeps its own checkpoints in the run's work
folder (stage checkpoints, the fine-tuned encoder teacher), and teacher outputs go to the
store's teacher cache, so a killed run continues where it was.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bundle_runtime.deploy import seed_approved_answers, store_bundle
from bundle_runtime.manifest import BundleError, bundle_checksum, load_manifest, verify_bundle
from distill_worker.config import DistillConfig
from distill_worker.data.snapshots import SnapshotError, create_snapshot, load_snapshot
from distill_worker.loop.bundle_eval import evaluate_bundle
from distill_worker.loop.context import LoopContext
from distill_worker.loop.errors import PermanentRunError, RetryableRunError
from distill_worker.loop.gate import judge
from distill_worker.loop.lease import Lease
from distill_worker.loop.rank_runner import RankRunFailed, run_on_ranks
from distill_worker.run_config import RunConfig
from distill_worker.teacher.base import TeacherError
from distill_worker.teacher.cache import TeacherCache
from distill_worker.teacher.openai_compat import OpenAIResponder
from distill_worker.teacher.prepare import META_FILE, prepared_responder_dir
from feedback import aliases
from feedback.db import session_scope
from feedback.models import ActorType, RunTrigger
from feedback.repositories.audit import AuditRepository
from feedback.repositories.model_versions import PRODUCTION, ModelVersionRepository
from feedback.repositories.runs import RunRepository
from feedback.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class RunState:
    """What the steps read: the run's identity, config and the results of earlier steps."""

    id: uuid.UUID
    trigger: str
    config: dict[str, Any]
    steps: dict[str, Any]


Stage = Callable[[str, float | None], None]  # stage name, overall progress (None: keep)
TRAIN_SHARE = (0.2, 0.4)  # where the train step starts and ends in the run's progress


def snapshot(ctx: LoopContext, state: RunState, lease: Lease) -> dict[str, Any]:
    """Freeze the training set (idempotent per run id: the same snapshot on a redelivery)."""
    with session_scope(ctx.sessions()) as session:
        try:
            info = create_snapshot(
                session,
                ctx.snapshots_dir,
                run_id=state.id,
                # the teacher cache is reused across runs only when both draw the same sample
                seed=DistillConfig.from_dict(state.config["distill"]).seed,
                settle_seconds=ctx.settings.worker.snapshot_settle_s,
            )
        except SnapshotError as exc:
            raise PermanentRunError(f"snapshot: {exc}") from exc
        _hold(session, state, lease)
    return {"snapshot_id": str(info.id), "path": str(info.path), "counts": info.counts}


def remote_responder(settings: Settings, tokenizer_dir: Path) -> OpenAIResponder | None:
    """The configured OpenAI-compatible teacher (vLLM), or None for the in-process one. Its
    own retries are short; a longer outage becomes a retry of the whole task with backoff."""
    worker = settings.worker
    if worker.responder_url is None:
        return None
    if not worker.responder_model:
        raise PermanentRunError(
            "train: worker.responder_url is set but worker.responder_model is not; set it to "
            "the model name the teacher server serves"
        )
    key = worker.responder_api_key
    try:
        return OpenAIResponder(
            worker.responder_url,
            worker.responder_model,
            api_key=key.get_secret_value() if key else None,
            timeout_s=worker.responder_timeout_s,
            max_concurrency=worker.responder_concurrency,
            chat_template_tokenizer_dir=tokenizer_dir,
        )
    except ValueError as exc:
        raise PermanentRunError(f"train: {exc}") from exc


def champion_dir(ctx: LoopContext) -> tuple[str, Path] | None:
    with session_scope(ctx.sessions()) as session:
        version = ModelVersionRepository(session).resolve_alias(PRODUCTION)
        if version is None:
            return None
        return version.id, Path(version.bundle_uri)


def train(ctx: LoopContext, state: RunState, lease: Lease, stage: Stage) -> dict[str, Any]:
    """Distil the candidate into the run's work folder; a finished, intact candidate from an
    earlier delivery is kept, a half-written one is removed and exported again."""
    from distill_worker.pipeline import DistillRequest, run_distillation
    from distill_worker.pipeline import RunCancelled as PipelineStopped

    work = ctx.runs_dir / str(state.id)
    out = work / "candidate"
    version = f"run-{state.id.hex[:12]}"
    if out.exists():
        try:
            manifest = verify_bundle(out)
            return {"bundle_dir": str(out), "model_version": manifest.model_version}
        except BundleError:
            shutil.rmtree(out)
    worker = ctx.settings.worker
    responder = worker.responder_dir or prepared_responder_dir(ctx.settings.data_dir)
    missing = [n for n in (META_FILE, "tokenizer.json") if not (responder / n).is_file()]
    if missing:
        raise PermanentRunError(
            f"train: the responder folder {responder} is not a prepared teacher (missing "
            f"{', '.join(missing)}); run `chatdistill teacher prepare` or set "
            "worker.responder_dir"
        )
    champion = champion_dir(ctx)
    # A compression run trains a different (smaller) student; `warm_start: false` asks for a
    # run from the teacher alone.
    fresh = state.config.get("compression") or state.config.get("warm_start") is False
    warm = champion[1] if champion and not fresh else None
    # As stored when the run was opened; a row from before the teacher and data knobs were
    # stored takes them from the worker's settings, as it did then.
    config = RunConfig.from_row(state.config, fallback=ctx.run_settings(RunTrigger.MANUAL))
    cache = TeacherCache(ctx.sessions())

    def on_step(name: str, fraction: float) -> None:
        start, end = TRAIN_SHARE
        stage(f"train:{name}", start + (end - start) * fraction)

    request = DistillRequest(
        out_dir=out,
        work_dir=work,
        responder_dir=responder,
        config=config,
        knowledge_path=worker.knowledge_path,
        model_version=version,
        teacher_cache=cache,
        snapshot_dir=Path(state.steps["snapshot"]["path"]),
        warm_start_bundle=warm,
        on_step=on_step,
        should_stop=lambda: lease.stopped,
        run_id=state.id,
        responder=remote_responder(ctx.settings, responder),
    )
    processes = worker.distill_processes
    try:
        if processes > 1:  # under torchrun, one process per GPU (distill_worker.ranks)
            logger.info("run %s: training on %d processes (torchrun)", state.id, processes)
            result = run_on_ranks(replace(request, responder=None), processes)
        else:
            result = run_distillation(
                request, log=lambda line: logger.info("run %s: %s", state.id, line.strip())
            )
    except RankRunFailed as exc:
        if exc.retryable:
            raise RetryableRunError(f"train: {exc}") from exc
        raise PermanentRunError(f"train: {exc}") from exc
    except PipelineStopped:
        lease.check()  # raises RunCancelled or LeaseLost
        raise
    except TeacherError as exc:
        if exc.retryable:
            raise RetryableRunError(f"teacher: {exc}") from exc
        raise PermanentRunError(f"teacher: {exc}") from exc
    finally:
        cache.close()
    lease.check()  # a stop request ends training early: do not checkpoint a partial result
    summary = {k: result.metrics.get(k) for k in ("intent", "train_rows", "dev_rows")}
    return {
        "bundle_dir": str(result.bundle_dir),
        "model_version": result.manifest.model_version,
        "warm_start": champion[0] if warm and champion else None,
        "metrics": summary,
    }


def evaluate(ctx: LoopContext, state: RunState, lease: Lease) -> dict[str, Any]:
    """Candidate vs champion on the snapshot's held-out split, and the gate's verdict."""
    _, heldout = load_snapshot(Path(state.steps["snapshot"]["path"]))
    if not heldout:
        raise PermanentRunError("evaluate: the snapshot has no held-out rows to gate on")
    gate = ctx.settings.worker.gate
    candidate = evaluate_bundle(
        Path(state.steps["train"]["bundle_dir"]), heldout, max_replies=gate.eval_replies
    )
    champion = champion_dir(ctx)
    champion_figures: dict[str, Any] | None = None
    notes: list[str] = []
    if champion is not None:
        try:
            champion_figures = evaluate_bundle(champion[1], heldout, max_replies=gate.eval_replies)
        except (BundleError, OSError) as exc:
            notes.append(f"champion {champion[0]} could not be evaluated ({exc}); not compared")
    verdict = judge(
        candidate, champion_figures, gate, compression=bool(state.config.get("compression"))
    )
    out = verdict.as_json()
    out["notes"] = [*verdict.notes, *notes]
    out["champion_version"] = champion[0] if champion else None
    return out


def register(ctx: LoopContext, state: RunState, lease: Lease) -> dict[str, Any]:
    """Copy the candidate into the artifact store and register it (refused ones too, so an
    operator can look at them); idempotent: the same version and checksum again is a no-op."""
    manifest, stored = store_bundle(
        Path(state.steps["train"]["bundle_dir"]), ctx.settings.bundles_dir
    )
    verdict = state.steps["evaluate"]
    with session_scope(ctx.sessions()) as session:
        ModelVersionRepository(session).register(
            version_id=manifest.model_version,
            bundle_uri=str(stored),
            checksum=bundle_checksum(stored),
            metrics={**manifest.metrics, "gate": _numbers(verdict)},
            run_id=state.id,
            notes=None
            if verdict["passed"]
            else "refused by the gate: " + "; ".join(verdict["reasons"]),
        )
        run = _hold(session, state, lease)
        run.candidate_version_id = manifest.model_version
    return {"model_version": manifest.model_version, "bundle_dir": str(stored)}


def promote(ctx: LoopContext, state: RunState, lease: Lease) -> dict[str, Any]:
    """Point production at the candidate (registered by `register`) and seed its approved
    answers, with one audit row carrying the gate's numbers, in one transaction with the
    step's checkpoint; after the commit, tell the API processes."""
    verdict = state.steps["evaluate"]
    version = state.steps["register"]["model_version"]
    reason = f"run {state.id} ({state.trigger}): the gate passed the candidate"
    actor = aliases.Actor(ActorType.SYSTEM, f"run:{state.id}")
    moved: aliases.Move | None = None
    with session_scope(ctx.sessions()) as session:
        run = _hold(session, state, lease)
        current = ModelVersionRepository(session).resolve_alias(PRODUCTION)
        if current is None or current.id != version:
            manifest = load_manifest(Path(state.steps["register"]["bundle_dir"]))
            seeded = seed_approved_answers(session, manifest)
            moved = aliases.promote(
                session, version, actor=actor, reason=reason, action="run.promote",
                details={"run": str(state.id), "gate": _numbers(verdict),
                         "seeded_approved_answers": seeded},
            )  # fmt: skip
            previous = moved.previous_version_id
        else:  # already in production (deployed by hand): nothing moves, the run is recorded
            previous = verdict.get("champion_version")
            AuditRepository(session).record(
                actor_type=actor.type,
                actor_id=actor.id,
                action="run.promote",
                target_type="model_version",
                target_id=version,
                details={"run": str(state.id), "previous": previous, "gate": _numbers(verdict)},
            )
        steps = dict(run.steps or {})
        steps["promote"] = {"done": True, "model_version": version, "previous": previous}
        run.steps = steps
    if moved is not None:
        aliases.publish(ctx.settings, moved)
    return {"model_version": version, "previous": previous}


def _hold(session: Any, state: RunState, lease: Lease) -> Any:
    """The run row, locked, if this task still holds it (else the lease check raises)."""
    repo = RunRepository(session)
    run = repo.get(state.id, for_update=True)
    if not repo.holds(run, lease.owner):
        lease.check()
        raise PermanentRunError("the run's lease was lost")  # check() raised already
    return run


def _numbers(verdict: dict[str, Any]) -> dict[str, Any]:
    keys = ("passed", "reasons", "notes", "candidate", "champion", "champion_version")
    return {k: verdict.get(k) for k in keys}
