"""`chatdistill simulate`: the drift simulation as one command (see the package docstring)."""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from pathlib import Path

import click

from distill_worker.simulate.presets import TINY_STUDENT, monitor_thresholds, stack_settings
from distill_worker.simulate.run import SimulationPlan, simulate, write_outputs
from distill_worker.simulate.scenario import (
    Scenario,
    ScenarioError,
    build_scenario,
    write_seed_csv,
)
from distill_worker.simulate.stack import Stack, StackConfig, StackError
from distill_worker.simulate.traffic import SimulationError, Traffic
from distill_worker.teacher.prepare import prepared_responder_dir
from feedback.settings import Settings

PASSWORD_ENV = "CHATDISTILL_SIM_OPERATOR_PASSWORD"  # noqa: S105 - a variable name


@click.command("simulate")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Labelled data set the customers are drawn from (CLINC150 JSON, CSV, JSONL).",
)
@click.option("--known", type=int, default=6, show_default=True, help="Intents before the shift.")
@click.option("--new", type=int, default=3, show_default=True, help="Intents the shift adds.")
@click.option(
    "--shift-share",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of post-shift messages from the new intents.",
)
@click.option("--per-intent", type=int, default=60, show_default=True)
@click.option(
    "--before",
    "before_s",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds of steady traffic before the shift.",
)
@click.option(
    "--max-after",
    "max_after_s",
    type=float,
    default=1800.0,
    show_default=True,
    help="Give up this many seconds after the shift.",
)
@click.option(
    "--rate",
    "rate_per_s",
    type=float,
    default=2.0,
    show_default=True,
    help="Customer messages per second.",
)
@click.option("--customers", type=int, default=2, show_default=True)
@click.option(
    "--label-share",
    type=float,
    default=0.3,
    show_default=True,
    help="Share of replies the simulated operator labels with the true intent.",
)
@click.option("--window", type=int, default=40, show_default=True)
@click.option(
    "--recover-margin",
    type=float,
    default=0.1,
    show_default=True,
    help="Recovered: accuracy back at the monitor's threshold plus this.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--attach", default=None, help="Base URL of a running system (else start one).")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--database-url", default=None, help="Started stack: store URL (default SQLite).")
@click.option("--redis-url", default=None, help="Started stack: Redis URL (default none).")
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Started stack: deploy this bundle as the first production.",
)
@click.option(
    "--bootstrap/--no-bootstrap",
    default=False,
    show_default=True,
    help="Started stack: distil the first student from the known intents' seed half.",
)
@click.option(
    "--student",
    type=click.Choice(["tiny", "default"]),
    default="tiny",
    show_default=True,
    help="Started stack: student size and teacher budgets of runs.",
)
@click.option(
    "--responder-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Started stack: an already prepared responder (SmolLM2) folder.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Started stack: more settings, e.g. MONITOR__WINDOW_REPLIES=40.",
)
@click.option("--operator-email", default="simulator@example.com", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default <data_dir>/simulations/<time>).",
)
def simulate_command(data_path: Path, known: int, new: int, shift_share: float, per_intent: int,
                     attach: str | None, port: int, database_url: str | None,
                     redis_url: str | None, bundle: Path | None, bootstrap: bool,
                     student: str, responder_dir: Path | None, overrides: tuple[str, ...],
                     operator_email: str, out: Path | None,
                     **plan_options: float) -> None:  # fmt: skip
    """Drive the running system with simulated customers, shift the traffic, and measure
    detection and recovery; writes simulation.png and summary.json."""
    settings = Settings()
    try:
        scenario = build_scenario(
            data_path, known=known, new=new, shift_share=shift_share, per_intent=per_intent,
            seed=int(plan_options["seed"]),
        )  # fmt: skip
        plan = SimulationPlan(**plan_options)  # type: ignore[arg-type]
    except (ScenarioError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    out = out or settings.data_dir / "simulations" / time.strftime("%Y%m%d-%H%M%S")
    extra = stack_settings(student) | dict(_pair(item) for item in overrides)
    password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
    if attach and not os.environ.get(PASSWORD_ENV):
        raise click.UsageError(f"attaching needs the operator's password in {PASSWORD_ENV}")
    setup = {
        "store": "postgresql" if (database_url or "").startswith("postgres") else "sqlite",
        "redis": bool(redis_url), "attached": bool(attach), "overrides": extra,
    }  # fmt: skip
    if attach is None:
        accuracy_threshold, latency_threshold = monitor_thresholds(extra)
    else:  # the attached system's settings are its own; ours come from this environment
        accuracy_threshold = settings.monitor.min_intent_accuracy
        latency_threshold = settings.monitor.max_latency_p95_ms
    stack: Stack | None = None
    try:
        if attach is None:
            stack = Stack(StackConfig(
                data_dir=out / "system", port=port, database_url=database_url,
                redis_url=redis_url, env={f"CHATDISTILL_{k}": v for k, v in extra.items()},
            ))  # fmt: skip
            stack.prepare(operator_email=operator_email, operator_password=password)
            if responder_dir is not None:
                link = prepared_responder_dir(stack.config.data_dir)
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(responder_dir.resolve(), target_is_directory=True)
            _first_model(stack, scenario, out, bundle, bootstrap, student)
            click.echo(f"starting chat_api, worker and beat (logs in {stack.log_dir})")
            stack.start()
        base = attach or (stack.base_url if stack else "")

        def connect(rng: random.Random) -> Traffic:
            return Traffic(base, operator_email=operator_email, operator_password=password,
                           label_share=plan.label_share, rng=rng)  # fmt: skip

        result = simulate(
            connect, scenario, plan,
            recover_at=min(1.0, accuracy_threshold + plan.recover_margin),
            check_alive=stack.check_alive if stack else lambda: None, log=click.echo,
        )  # fmt: skip
    except (StackError, SimulationError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if stack is not None:
            stack.stop()
    png, summary = write_outputs(
        result, out, accuracy_threshold=accuracy_threshold,
        latency_threshold_ms=latency_threshold, plan=plan, scenario=scenario, setup=setup,
    )  # fmt: skip
    click.echo(f"{result.ended}; plot {png}; summary {summary}")
    if result.ended.startswith(("stopped", "a customer failed")):
        raise SystemExit(1)


def _first_model(
    stack: Stack, scenario_: Scenario, out: Path, bundle: Path | None, bootstrap: bool,
    student: str,
) -> None:  # fmt: skip
    """The known intents' seed half becomes the store's seed data (what runs replay), and the
    first production model is `bundle` or, with `bootstrap`, distilled from that seed."""
    seed_csv = write_seed_csv(scenario_, out / "seed.csv")
    stack.cli("import", "banking77", str(seed_csv))  # the generic `text,category` CSV reader
    if bundle is not None:
        stack.cli("deploy", str(bundle), "--reason", "simulation: first model")
    elif bootstrap:
        first = out / "first-student"
        args = ["--eval-replies", "4"]
        if student == "tiny":
            config = out / "tiny-student.json"
            config.write_text(json.dumps(TINY_STUDENT), encoding="utf-8")
            args += ["--config", str(config), "--reply-budget", "16", "--teacher-epochs", "1"]
        click.echo(f"distilling the first student from {len(scenario_.seed)} seed rows")
        stack.cli("distill", "--data", str(seed_csv), "--out", str(first), *args)
        stack.cli("deploy", str(first), "--reason", "simulation: first model")


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.UsageError(f"--set takes KEY=VALUE, got {item!r}")
    return key.upper(), value
