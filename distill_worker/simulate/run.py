"""The simulation loop: steady traffic, the shift, then wait for the loop to detect, retrain,
promote and recover, or for the time limit; then the plot and the summary.

Customers run in `plan.customers` threads (each its own HTTP client and random stream); the
main thread watches the clock, flips the shift, polls the system's timeline (runs, production
moves) and checks that the stack's processes are alive.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill_worker.simulate.plot import plot
from distill_worker.simulate.scenario import Scenario
from distill_worker.simulate.summary import recovery, rolling_accuracy, summarize
from distill_worker.simulate.traffic import RATING_RULE, Observation, Traffic


@dataclass(frozen=True)
class SimulationPlan:
    before_s: float = 120.0  # steady traffic before the shift
    max_after_s: float = 1800.0  # give up this long after the shift
    rate_per_s: float = 2.0  # customer messages per second, all customers together
    customers: int = 2
    label_share: float = 0.3
    window: int = 40  # rolling accuracy window (observations)
    settle: int = 60  # observations of the promoted version to collect before stopping
    recover_margin: float = 0.1  # recovered: accuracy at the monitor's threshold + this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.before_s <= 0 or self.max_after_s <= 0 or self.rate_per_s <= 0:
            raise ValueError("before, max_after and rate must be positive")
        if self.customers < 1 or self.window < 1 or self.settle < 1:
            raise ValueError("customers, window and settle are at least 1")


@dataclass
class SimulationResult:
    points: list[Observation]
    timeline: dict[str, list[dict[str, Any]]]
    shift_at: float
    ended: str  # "recovered", "time limit", or the error that stopped it


def simulate(
    connect: Callable[[random.Random], Traffic],
    scenario: Scenario,
    plan: SimulationPlan,
    *,
    recover_at: float,
    check_alive: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = print,
) -> SimulationResult:
    t0, wall0 = time.monotonic(), dt.datetime.now(dt.UTC)
    points: list[Observation] = []
    lock = threading.Lock()
    stop = threading.Event()
    shifted = threading.Event()
    errors: list[BaseException] = []
    interval = plan.customers / plan.rate_per_s

    def customer(index: int) -> None:
        rng = random.Random(plan.seed * 1000 + index)
        traffic = connect(rng)
        try:
            while not stop.is_set():
                started = time.monotonic()
                text, intent = scenario.draw(rng, shifted=shifted.is_set())
                phase = "after" if shifted.is_set() else "before"
                point = traffic.customer_turn(text, intent, phase=phase, t0=t0)
                with lock:
                    points.append(point)
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        except BaseException as exc:  # reported by the main thread, which then stops
            errors.append(exc)
        finally:
            traffic.close()

    watcher = connect(random.Random(plan.seed))
    threads = [threading.Thread(target=customer, args=(i,), daemon=True)
               for i in range(plan.customers)]  # fmt: skip
    for thread in threads:
        thread.start()
    shift_at = plan.before_s
    timeline: dict[str, list[dict[str, Any]]] = {"runs": [], "promotions": []}
    ended = "time limit"
    try:
        while True:
            time.sleep(2.0)
            now = time.monotonic() - t0
            if errors:
                ended = f"a customer failed: {errors[0]!r}"
                break
            check_alive()
            if not shifted.is_set() and now >= shift_at:
                shifted.set()
                log(f"[{now:6.0f}s] traffic shift: new intents {', '.join(sorted(scenario.new))}")
            timeline = watcher.timeline(wall0)
            with lock:
                snapshot = list(points)
            if shifted.is_set() and _recovered(
                snapshot, timeline, shift_at, plan, recover_at, recover_at - plan.recover_margin
            ):
                ended = "recovered"
                break
            if now >= shift_at + plan.max_after_s:
                break
            if int(now) % 30 < 2:
                log(_progress(now, snapshot, timeline, plan.window))
    except KeyboardInterrupt:  # Ctrl-C: stop the traffic, still write what was measured
        ended = "interrupted"
        log(ended)
    except Exception as exc:  # a process died or the API went away: report what we have
        ended = f"stopped: {exc}"
        log(ended)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        try:
            timeline = watcher.timeline(wall0)
        except Exception as exc:  # the stack may be gone; keep what we have
            log(f"could not read the final timeline: {exc!r}")
        watcher.close()
    return SimulationResult(sorted(points, key=lambda p: p.t), timeline, shift_at, ended)


def write_outputs(
    result: SimulationResult,
    out_dir: Path,
    *,
    accuracy_threshold: float,
    latency_threshold_ms: float,
    plan: SimulationPlan,
    scenario: Scenario,
    setup: dict[str, Any],
) -> tuple[Path, Path]:
    """-> (PNG, summary JSON). The observations go beside them as JSON lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(
        result.points, result.timeline, shift_at=result.shift_at,
        threshold=accuracy_threshold, window=plan.window,
        recover_at=min(1.0, accuracy_threshold + plan.recover_margin),
    )  # fmt: skip
    summary.update(
        ended=result.ended,
        rating_rule=RATING_RULE,
        known_intents=sorted(scenario.known),
        new_intents=sorted(scenario.new),
        plan=asdict(plan),
        setup=setup,
        latency_threshold_ms=latency_threshold_ms,
        timeline=result.timeline,
    )
    with (out_dir / "observations.jsonl").open("w", encoding="utf-8") as handle:
        for point in result.points:
            handle.write(json.dumps(point.to_json()) + "\n")
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    png = plot(
        result.points, result.timeline, out_dir / "simulation.png", shift_at=result.shift_at,
        accuracy_threshold=accuracy_threshold, latency_threshold_ms=latency_threshold_ms,
        window=plan.window, title=f"drift simulation ({setup.get('store', '?')}"
        f"{' + redis' if setup.get('redis') else ''}): "
        f"{len(scenario.known)} known intents + {len(scenario.new)} new at the shift",
    )  # fmt: skip
    return png, summary_path


def _recovered(
    points: list[Observation], timeline: dict[str, list[dict[str, Any]]], shift_at: float,
    plan: SimulationPlan, recover_at: float, threshold: float,
) -> bool:  # fmt: skip
    """The summary's recovery (see `summary`) has happened, and the recovering version has
    answered `settle` messages. A promotion that did not recover keeps the simulation going:
    the monitor should notice again and the loop try again."""
    moves = [e for e in timeline["promotions"] if (e.get("at") or -1) >= shift_at]
    ordered = sorted(points, key=lambda p: p.t)
    roll = rolling_accuracy(ordered, plan.window)
    at, version = recovery(ordered, roll, moves, recover_at, threshold, plan.window)
    if at is None:
        return False
    return sum(1 for p in points if p.t >= at and p.model_version == version) >= plan.settle


def _progress(
    now: float, points: list[Observation], timeline: dict[str, list[dict[str, Any]]], window: int
) -> str:
    recent = points[-window:]
    acc = sum(p.correct for p in recent) / len(recent) if recent else float("nan")
    runs = timeline["runs"]
    last = runs[-1] if runs else None
    run = f"run {last['status']} {last['stage'] or ''}" if last else "no run"
    version = recent[-1].model_version if recent else None
    return f"[{now:6.0f}s] {len(points)} msgs, accuracy(last {window}) {acc:.2f}, {version}, {run}"
