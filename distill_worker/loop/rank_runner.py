"""A run of the loop on N processes (`worker.distill_processes` > 1): the worker's train step
starts `torchrun` and waits; every rank rebuilds the request from a file and runs the pipeline.

    the worker (train step)                      the ranks (python -m ...loop.rank_runner)
    writes <work>/ranks/request.json             read it; Settings() from the worker's environment
    starts torchrun (log: <work>/ranks/log.txt)  rank 0: the store's teacher cache and the
                                                 configured teacher (vLLM, else in-process)
    polls <work>/ranks/progress.json -> stage()  rank 0 writes it at each step of the run
    lease stopped -> writes <work>/ranks/stop    every rank stops before its next step
    exit 0 -> reads the bundle's manifest        a failure: rank 0 writes outcome.json (the
                                                 error's kind, text, whether a retry may help)

Nothing secret is written: the request holds paths, the run config and ids; the ranks take the
database URL and the teacher's key from the environment they inherit. The work folder and its
checkpoints are the ones a single-process run uses, so a run can resume under another number
of processes.

Errors: `RankRunFailed` (a rank failed; `retryable` when the teacher was unreachable),
`distill_worker.pipeline.RunCancelled` (the stop file was honoured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bundle_runtime.manifest import verify_bundle
from distill_worker.launch import torchrun_command
from distill_worker.run_config import RunConfig
from distill_worker.run_request import DistillRequest, DistillResult

__all__ = ["RankRunFailed", "main", "read_request", "run_on_ranks", "write_request"]

_PATHS = (
    "out_dir",
    "work_dir",
    "responder_dir",
    "data_path",
    "knowledge_path",
    "snapshot_dir",
    "warm_start_bundle",
)
CANCELLED_EXIT = 3


class RankRunFailed(RuntimeError):
    """A rank of a multi-process run failed; the message has rank 0's error or the log's tail."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def _folder(work_dir: Path) -> Path:
    return work_dir / "ranks"


def write_request(req: DistillRequest) -> Path:
    """The request as JSON in the work folder (paths, config, ids; no services, no secrets)."""
    fields: dict[str, Any] = {
        name: str(getattr(req, name)) if getattr(req, name) is not None else None for name in _PATHS
    }
    fields |= {
        "config": req.config.to_row(),
        "model_version": req.model_version,
        "run_id": str(req.run_id) if req.run_id else None,
    }
    folder = _folder(req.work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "request.json"
    path.write_text(json.dumps(fields, indent=2), encoding="utf-8")
    return path


def read_request(path: Path) -> DistillRequest:
    data = json.loads(path.read_text(encoding="utf-8"))

    def path_of(name: str) -> Path | None:
        return Path(data[name]) if data.get(name) else None

    def required(name: str) -> Path:
        value = path_of(name)
        if value is None:
            raise ValueError(f"{path}: {name} is missing; write it with write_request")
        return value

    return DistillRequest(
        out_dir=required("out_dir"),
        work_dir=required("work_dir"),
        responder_dir=required("responder_dir"),
        config=RunConfig.model_validate(data["config"]),
        data_path=path_of("data_path"),
        knowledge_path=path_of("knowledge_path"),
        model_version=data.get("model_version"),
        snapshot_dir=path_of("snapshot_dir"),
        warm_start_bundle=path_of("warm_start_bundle"),
        run_id=uuid.UUID(data["run_id"]) if data.get("run_id") else None,
    )


def run_on_ranks(
    req: DistillRequest,
    nproc: int,
    *,
    env: Mapping[str, str] | None = None,
    poll_s: float = 1.0,
) -> DistillResult:
    """Run `req` under torchrun on `nproc` local processes and wait: `req.on_step` is called as
    rank 0 reports its steps, `req.should_stop()` is asked every `poll_s` (True: the ranks stop
    before their next step and `RunCancelled` is raised here). `env`: the ranks' environment
    (default: this process's)."""
    from distill_worker.pipeline import RunCancelled

    folder = _folder(req.work_dir)
    request = write_request(req)
    for stale in ("progress.json", "stop", "outcome.json"):
        (folder / stale).unlink(missing_ok=True)
    command = torchrun_command(nproc, "distill_worker.loop.rank_runner", [str(request)])
    log_path = folder / "log.txt"
    seen: str | None = None
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=dict(env if env is not None else os.environ), stdout=log, stderr=log
        )
        try:
            while proc.poll() is None:
                time.sleep(poll_s)
                seen = _report_progress(folder, req.on_step, seen)
                if req.should_stop is not None and req.should_stop():
                    (folder / "stop").touch()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    _report_progress(folder, req.on_step, seen)
    outcome = _outcome(folder)
    if proc.returncode == CANCELLED_EXIT or outcome.get("kind") == "cancelled":
        raise RunCancelled(str(outcome.get("step", "?")))
    if proc.returncode != 0:
        reason = outcome.get("message") or _tail(log_path)
        raise RankRunFailed(
            f"the {nproc}-process run failed (exit {proc.returncode}; log {log_path}): {reason}",
            retryable=bool(outcome.get("retryable")),
        )
    manifest = verify_bundle(req.out_dir)
    return DistillResult(manifest=manifest, bundle_dir=req.out_dir, metrics=manifest.metrics)


def _report_progress(
    folder: Path, on_step: Callable[[str, float], None] | None, seen: str | None
) -> str | None:
    try:
        progress = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written yet, or being replaced
        return seen
    if on_step is not None and progress["step"] != seen:
        on_step(progress["step"], float(progress["fraction"]))
    return str(progress["step"])


def _outcome(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "outcome.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return " | ".join(text[-lines:])


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """One rank of a multi-process run (started by torchrun through `run_on_ranks`)."""
    from dataclasses import replace

    from distill_worker import distributed, ranks
    from distill_worker.loop.steps import remote_responder
    from distill_worker.pipeline import RunCancelled, run_distillation
    from distill_worker.teacher.base import TeacherError
    from distill_worker.teacher.cache import TeacherCache
    from feedback.settings import Settings

    parser = argparse.ArgumentParser(description="one rank of a multi-process distillation run")
    parser.add_argument("request", type=Path)
    args = parser.parse_args(argv)
    req = read_request(args.request)
    folder = _folder(req.work_dir)
    settings = Settings()  # the worker's, from the environment the ranks inherit

    def on_step(name: str, fraction: float) -> None:
        _write_json(folder / "progress.json", {"step": name, "fraction": fraction})

    def echo(line: str) -> None:
        print(line, flush=True)

    with ranks.whole_run(req.config.device):
        # rank 0 alone asks the teacher and keeps its outputs (a worker's store is migrated;
        # the embedded SQLite file is migrated here, as `chatdistill distill` does)
        cache = TeacherCache.in_store(settings) if distributed.is_main() else None
        try:
            run_distillation(
                replace(
                    req,
                    on_step=on_step,
                    should_stop=lambda: (folder / "stop").exists(),
                    teacher_cache=cache,
                    responder=remote_responder(settings, req.responder_dir)
                    if distributed.is_main()
                    else None,
                ),
                log=echo,
            )
        except RunCancelled as exc:
            if distributed.is_main():
                _write_json(folder / "outcome.json", {"kind": "cancelled", "step": exc.step})
            return CANCELLED_EXIT
        except TeacherError as exc:
            if distributed.is_main():
                _write_json(
                    folder / "outcome.json",
                    {"kind": "teacher", "message": str(exc), "retryable": exc.retryable},
                )
            raise
        except Exception as exc:
            if distributed.is_main():
                _write_json(folder / "outcome.json", {"kind": "error", "message": str(exc)})
            raise
        finally:
            if cache is not None:
                cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
