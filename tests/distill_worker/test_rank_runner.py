"""The worker's way to run on N processes (`worker.distill_processes`): a real torchrun with 2
gloo ranks started by `run_on_ranks`, the request passed as a file, progress reported back and
a stop request honoured (slow: the real default teachers)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from bundle_runtime.manifest import verify_bundle
from distill_worker.loop.rank_runner import read_request, run_on_ranks, write_request
from distill_worker.pipeline import STEP_START, RunCancelled
from distill_worker.run_config import RunConfig
from distill_worker.run_request import DistillRequest
from tests.fixtures.distill_runs import TINY_RUN, write_demo_rows

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _request(tmp_path: Path, responder_dir: Path, **changes: object) -> DistillRequest:
    data = write_demo_rows(tmp_path / "demo.jsonl")
    return DistillRequest(
        out_dir=tmp_path / "bundle",
        work_dir=tmp_path / "work",
        responder_dir=responder_dir,
        config=RunConfig.model_validate(TINY_RUN),
        data_path=data,
        model_version="ranks-1",
        run_id=uuid.uuid4(),
        **changes,  # type: ignore[arg-type]
    )


def _env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATDISTILL_")}
    return {
        **base,
        "CHATDISTILL_DATA_DIR": str(tmp_path / "data"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def test_the_request_file_round_trips(tmp_path: Path) -> None:
    req = _request(tmp_path, tmp_path / "responder", warm_start_bundle=tmp_path / "champion")
    again = read_request(write_request(req))
    assert again == req
    assert "api_key" not in (tmp_path / "work" / "ranks" / "request.json").read_text()


def test_two_ranks_report_their_steps_and_leave_a_bundle(
    responder_dir: Path, tmp_path: Path
) -> None:
    steps: list[str] = []
    req = _request(tmp_path, responder_dir, on_step=lambda name, _f: steps.append(name))
    result = run_on_ranks(req, 2, env=_env(tmp_path), poll_s=0.2)
    manifest = verify_bundle(result.bundle_dir)
    assert manifest.model_version == "ranks-1" and manifest.parity["passed"] is True
    assert manifest.run_id == str(req.run_id)
    assert result.metrics["device"]["world_size"] == 2
    # progress arrives in order (a short step may be passed over between two polls)
    assert steps and steps[-1] == "export"
    assert [STEP_START[s] for s in steps] == sorted(STEP_START[s] for s in steps)


def test_a_stop_request_stops_every_rank(responder_dir: Path, tmp_path: Path) -> None:
    req = _request(tmp_path, responder_dir, should_stop=lambda: True)
    with pytest.raises(RunCancelled):
        run_on_ranks(req, 2, env=_env(tmp_path), poll_s=0.1)
    assert not (tmp_path / "bundle").exists()
    outcome = json.loads((tmp_path / "work" / "ranks" / "outcome.json").read_text())
    assert outcome["kind"] == "cancelled"
