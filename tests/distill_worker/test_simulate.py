"""The drift simulation's parts: the scenario from a labelled file (and from real CLINC150),
the rating rule, the summary from recorded points, the PNG, and the traffic generator driving
a real `chatdistill serve` process (started by the simulation's own `Stack`) on PostgreSQL."""

from __future__ import annotations

import csv
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from distill_worker.simulate.plot import plot
from distill_worker.simulate.run import SimulationPlan, simulate, write_outputs
from distill_worker.simulate.scenario import ScenarioError, build_scenario, write_seed_csv
from distill_worker.simulate.stack import Stack, StackConfig
from distill_worker.simulate.summary import rolling_accuracy, summarize
from distill_worker.simulate.traffic import Traffic, rate
from tests.conftest import TEST_SECRET, create_database, drop_database
from tests.live.server import free_port

CLINC = Path(__file__).resolve().parents[3] / "shared" / "data" / "clinc150" / "data_full.json"


def toy_csv(path: Path, intents: dict[str, list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        for intent, texts in intents.items():
            writer.writerows((text, intent) for text in texts)
    return path


def test_scenario_splits_seed_from_traffic_and_shifts(tmp_path: Path) -> None:
    data = toy_csv(tmp_path / "d.csv", {f"i{k}": [f"msg {k} {n}" for n in range(20)]
                                        for k in range(5)})  # fmt: skip
    scenario = build_scenario(data, known=3, new=2, shift_share=0.5, per_intent=20, seed=1)
    assert len(scenario.known) == 3 and len(scenario.new) == 2
    assert not set(scenario.known) & set(scenario.new)
    seed_texts = {text for text, _ in scenario.seed}
    assert {intent for _, intent in scenario.seed} == set(scenario.known)
    for texts in scenario.known.values():
        assert texts and not seed_texts & set(texts)  # customers send unseen messages
    rng = random.Random(0)
    before = [scenario.draw(rng, shifted=False)[1] for _ in range(300)]
    after = [scenario.draw(rng, shifted=True)[1] for _ in range(1000)]
    assert set(before) == set(scenario.known)
    share_new = sum(i in scenario.new for i in after) / len(after)
    assert 0.44 < share_new < 0.56
    rows = list(csv.reader(write_seed_csv(scenario, tmp_path / "seed.csv").open()))
    assert rows[0] == ["text", "category"] and len(rows) - 1 == len(scenario.seed)
    with pytest.raises(ScenarioError, match="usable intents"):
        build_scenario(data, known=4, new=2)


@pytest.mark.skipif(not CLINC.exists(), reason=f"CLINC150 is not at {CLINC}")
def test_scenario_from_real_clinc150() -> None:
    scenario = build_scenario(CLINC, known=6, new=3, seed=3)
    assert "oos" not in scenario.known and "oos" not in scenario.new
    assert all(len(texts) == 30 for texts in [*scenario.known.values(), *scenario.new.values()])
    assert len(scenario.seed) == 6 * 30


def test_rating_rule() -> None:
    assert rate("refund", "refund") == "up"
    assert rate("refund", "track_order") == "down"
    assert rate("refund", None) == "down"


@dataclass(frozen=True)
class P:
    t: float
    correct: bool
    model_version: str | None = "v1"
    server_latency_ms: float | None = 20.0
    status: str = "ok"


def drift_points() -> list[P]:
    """1 point/s: 100% right for 60 s, the shift at 60, 50% right until the promotion of v2
    at 150 s, then right again."""
    points = [P(float(t), True) for t in range(60)]
    points += [P(float(t), t % 2 == 0) for t in range(60, 150)]
    points += [P(float(t), True, "v2", 30.0) for t in range(150, 250)]
    return points


def test_summary_from_recorded_points() -> None:
    timeline = {
        "runs": [{"opened": 10.0, "finished": 40.0, "status": "succeeded"},
                 {"opened": 95.0, "finished": 140.0, "status": "succeeded"}],
        "promotions": [{"version": "v1", "at": -100.0}, {"version": "v2", "at": 150.0}],
    }  # fmt: skip
    summary = summarize(drift_points(), timeline, shift_at=60.0, threshold=0.8, window=20)
    assert summary["accuracy_before"] == 1.0
    assert summary["accuracy_dip"] == 0.5
    assert summary["accuracy_after"] == 1.0
    # The window of 20 holds 5 wrong answers (15/20 < 0.8) at t = 69 (61, 63, ..., 69).
    assert summary["crossed_after_shift_s"] == 9.0
    assert summary["time_to_detect_s"] == 35.0  # the run opened at 95 (the one at 10 is older)
    assert summary["time_to_promotion_s"] == 90.0
    assert summary["threshold_to_promotion_s"] == 81.0
    # Needs 20 answers of v2 (t = 169), where the window is all v2 and right.
    assert summary["time_to_recover_s"] == 109.0
    assert summary["recovered_by"] == "v2" and summary["promoted_versions"] == ["v2"]
    assert summary["runs_after_shift"] == 1


def test_summary_without_recovery_says_so() -> None:
    points = [P(float(t), t < 30) for t in range(60)]
    summary = summarize(points, {"runs": [], "promotions": []}, shift_at=30.0, threshold=0.8,
                        window=10)  # fmt: skip
    assert summary["time_to_detect_s"] is None and summary["time_to_recover_s"] is None
    assert summary["accuracy_dip"] == 0.0 and summary["accuracy_after"] is None


def test_rolling_accuracy_counts_the_last_window_only() -> None:
    points = [P(0, True), P(1, False), P(2, False), P(3, True)]
    assert [a for _, a in rolling_accuracy(points, 2)] == [1.0, 0.5, 0.0, 0.5]
    with pytest.raises(ValueError, match="at least one"):
        rolling_accuracy(points, 0)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    timeline = {"runs": [{"opened": 95.0, "finished": 140.0, "status": "succeeded"}],
                "promotions": [{"version": "v2", "at": 150.0}]}  # fmt: skip
    out = plot(
        drift_points(), timeline, tmp_path / "p.png", shift_at=60.0, accuracy_threshold=0.8,
        latency_threshold_ms=500.0, window=20, title="t",
    )  # fmt: skip
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


pytest.importorskip("torch", reason="building the tiny bundle needs the `train` extra (torch)")
from tests.fixtures.tiny_bundle import TOY, TinyBundle  # noqa: E402


@pytest.fixture
def served(tmp_path: Path, tiny_bundle: TinyBundle) -> Iterator[tuple[Stack, str]]:
    """A real `chatdistill serve` (no worker, no beat) on a fresh PostgreSQL database, with the
    tiny bundle deployed and the simulation's operator created by the simulation's Stack."""
    name = f"chatdistill_sim_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    password = "simulated operator password"
    stack = Stack(
        StackConfig(data_dir=tmp_path / "sys", port=free_port(), database_url=url,
                    env={"CHATDISTILL_AUTH__SECRET_KEY": TEST_SECRET}),
        worker=False, beat=False,
    )  # fmt: skip
    try:
        stack.prepare(operator_email="sim@example.com", operator_password=password)
        stack.prepare(operator_email="sim@example.com", operator_password=password)  # idempotent
        stack.cli("deploy", str(tiny_bundle.path), "--reason", "simulation test")
        with stack:
            stack.start()
            yield stack, password
    finally:
        drop_database(name)


def test_traffic_drives_a_real_server_and_everything_lands(
    served: tuple[Stack, str], tmp_path: Path
) -> None:
    stack, password = served
    data = toy_csv(tmp_path / "toy.csv", {i: texts * 2 for i, (texts, _) in TOY.items()})
    scenario = build_scenario(data, known=2, new=1, shift_share=1.0, per_intent=8,
                              intents=["track_order", "refund", "out_of_scope"])  # fmt: skip
    plan = SimulationPlan(before_s=4.0, max_after_s=4.0, rate_per_s=6.0, customers=2,
                          label_share=0.5, window=5, settle=5)  # fmt: skip

    def connect(rng: random.Random) -> Traffic:
        return Traffic(
            stack.base_url, operator_email="sim@example.com", operator_password=password,
            label_share=plan.label_share, rng=rng,
        )  # fmt: skip

    logs: list[str] = []
    result = simulate(
        connect, scenario, plan, recover_at=0.8, check_alive=stack.check_alive, log=logs.append
    )
    assert result.ended == "time limit"  # no worker: nothing retrains
    points = result.points
    assert len(points) >= 20 and all(p.status == "ok" for p in points)
    assert {p.model_version for p in points} == {"tiny-1"}
    assert {p.phase for p in points} == {"before", "after"}
    assert all(p.intent == "out_of_scope" for p in points if p.phase == "after")
    before = [p for p in points if p.phase == "before"]
    assert sum(p.correct for p in before) / len(before) > 0.7  # the toy student knows these
    assert any(line.startswith("[") and "traffic shift" in line for line in logs)
    # Every reply was rated by the rule and the labels reached the store.
    with httpx.Client(base_url=stack.base_url) as http:
        login = {"email": "sim@example.com", "password": password}
        token = http.post("/v1/operator/login", json=login).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        summary = http.get("/v1/operator/metrics/summary", headers=headers).json()
    assert summary["thumbs_up"] == sum(p.correct for p in points)
    assert summary["thumbs_up"] + summary["thumbs_down"] == len(points)
    assert summary["verified_intents"] == sum(p.labelled for p in points) > 0
    assert result.timeline["promotions"][-1]["version"] == "tiny-1"
    png, summary_path = write_outputs(
        result, tmp_path / "out", accuracy_threshold=0.8, latency_threshold_ms=500.0,
        plan=plan, scenario=scenario, setup={"store": "postgresql"},
    )  # fmt: skip
    written = json.loads(summary_path.read_text())
    assert written["observations"] == len(points) and written["failed_requests"] == 0
    assert written["new_intents"] == ["out_of_scope"] and "thumbs up" in written["rating_rule"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "out" / "observations.jsonl").read_text().splitlines()
    assert len(lines) == len(points)


def test_recovery_after_a_second_promotion() -> None:
    """The first retrained version (v2) is no better; the loop tries again (v3) and recovers."""
    points = [P(float(t), True) for t in range(40)]
    points += [P(float(t), t % 2 == 0) for t in range(40, 80)]
    points += [P(float(t), t % 2 == 0, "v2") for t in range(80, 140)]
    points += [P(float(t), True, "v3") for t in range(140, 200)]
    timeline = {
        "runs": [{"opened": 50.0}, {"opened": 110.0}],
        "promotions": [{"version": "v2", "at": 80.0}, {"version": "v3", "at": 140.0}],
    }
    summary = summarize(points, timeline, shift_at=40.0, threshold=0.8, window=10)
    assert summary["time_to_promotion_s"] == 40.0  # the first try
    assert summary["recovered_by"] == "v3"
    assert summary["time_to_recover_s"] == 109.0  # 10 answers of v3: t = 149
    assert summary["accuracy_dip"] == 0.5 and summary["accuracy_after"] == 1.0
    assert summary["runs_after_shift"] == 2


def test_a_blip_above_the_target_is_no_recovery() -> None:
    points = [P(float(t), True) for t in range(40)]
    points += [P(float(t), t % 2 == 0) for t in range(40, 80)]
    points += [P(float(t), True, "v2") for t in range(80, 90)]  # a lucky streak...
    points += [P(float(t), t % 3 == 0, "v2") for t in range(90, 200)]  # ...then a third right
    timeline = {"runs": [{"opened": 50.0}], "promotions": [{"version": "v2", "at": 80.0}]}
    summary = summarize(points, timeline, shift_at=40.0, threshold=0.6, window=10, recover_at=0.7)
    assert summary["time_to_recover_s"] is None and summary["recovered_by"] is None
    assert summary["accuracy_after"] == 0.3
