"""Worker-side commands of `chatdistill` (loaded lazily by `chat_api.cli`, since they need torch):
`distill`, `export`, `quickstart`, `import`, and the `teacher` group (`teacher_cli`)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from sqlalchemy.orm import Session

from bundle_runtime.handoff_score import HANDOFF_SCORES
from distill_worker import ranks
from distill_worker.budgets import cap_note
from distill_worker.config import DistillConfig
from distill_worker.data.importers.command import import_corpus as import_corpus
from distill_worker.devices import DeviceError
from distill_worker.run_config import AUTO, RunConfig, default_of
from distill_worker.simulate.cli import simulate_command as simulate_command
from distill_worker.teacher_cli import teacher as teacher
from feedback.settings import Settings

_SIZE_OPTIONS = {
    "enc_layers": "Encoder layers kept from the teacher.",
    "dec_layers": "Decoder layers.",
    "dec_hidden": "Decoder width.",
    "stage1_epochs": "Stage 1 (encoder) epochs.",
    "stage2_epochs": "Stage 2 (decoder + reward) epochs (the most it trains: it stops early "
    "when the held-out reply loss stops falling).",
    "max_reply_tokens": "Tokens of a reply: teacher replies, training targets, the served "
    "limit. Default 0: the 95th percentile of the data's reference replies (64 without any).",
}
_HELP = {name: field.description or "" for name, field in RunConfig.model_fields.items()}
# The time caps: a safety net, not the budget. Their defaults are RunConfig's and
# DistillConfig's, whether or not a --config file is given (a file without them gets them too).
_CAPS = {
    "teacher_max_minutes": ("the encoder teacher's fine-tuning", default_of("teacher_max_minutes")),
    "stage1_max_minutes": ("stage 1", DistillConfig.stage1_max_minutes),
    "stage2_max_minutes": ("stage 2", DistillConfig.stage2_max_minutes),
}


def _cap_help(name: str) -> str:
    what, default = _CAPS[name]
    shown = "no cap" if default is None else f"{default:g}"
    budget = "its epochs" + ("" if name == "stage2_max_minutes" else " and early stopping")
    return (
        f"Safety-net time cap of {what} in minutes (the budget is {budget}); 0: no cap. "
        f"Default: the --config file's, else {shown}."
    )


def _corpus_option(flag: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An optional existing file of messages, the RunConfig field `name`."""
    return click.option(
        flag,
        name,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=_HELP[name],
    )


def _cap(value: float) -> float | None:
    """A --*-max-minutes value: 0 is no cap."""
    if value < 0:
        raise click.BadParameter("a time cap is minutes > 0, or 0 for no cap")
    return None if value == 0 else value


def _config(
    config_file: Path | None,
    sizes: dict[str, Any],
    knobs: dict[str, Any],
    default_ood: Path | None = None,
) -> RunConfig:
    """The run's config: the --config file (a RunConfig, or a DistillConfig alone; fields it
    lacks, the time caps included, take RunConfig's and DistillConfig's defaults), then the size
    and cap options given (`sizes`: DistillConfig fields), then the teacher and data options.
    `default_ood`: the data folder's out-of-domain corpus, used when neither the options nor
    the file name one (a file's `"ood_corpus": null` keeps the run without)."""
    stored: dict[str, Any] = {}
    if config_file is not None:
        stored = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise click.UsageError(f"{config_file}: a JSON object of RunConfig fields is expected")
        # DistillConfig fields alone are a DistillConfig; anything else is a RunConfig, checked
        # whole (an unknown or misspelt key is refused, never dropped).
        if set(stored) <= {f.name for f in fields(DistillConfig)}:
            stored = {"distill": stored}
    if default_ood is not None and "ood_corpus" not in stored and "ood_corpus" not in knobs:
        knobs = knobs | {"ood_corpus": str(default_ood.resolve())}
    try:
        return RunConfig.model_validate(stored).with_changes(distill=sizes, **knobs)
    except ValueError as exc:
        raise click.UsageError(f"{config_file}: {exc}" if config_file else str(exc)) from None


@click.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="CSV text,category / CLINC150 JSON / JSONL. Default: the built-in demo corpus.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder.")
@click.option(
    "--knowledge",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Company policies (Markdown) to ground the teacher's replies.",
)
@click.option("--split", default=default_of("split"), show_default=True, help=_HELP["split"])
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder (resumable). Default: <data_dir>/runs/<bundle name>-<hash of its full path>.",
)
@click.option(
    "--reply-budget",
    type=int,
    default=default_of("reply_budget"),
    show_default=True,
    help=_HELP["reply_budget"],
)
@click.option(
    "--replies-per-intent",
    type=int,
    default=default_of("replies_per_intent"),
    show_default=True,
    help=_HELP["replies_per_intent"],
)
@click.option(
    "--eval-replies",
    type=int,
    default=default_of("eval_replies"),
    show_default=True,
    help=_HELP["eval_replies"],
)
@click.option(
    "--encoder-teacher",
    type=click.Choice(["minilm", "mpnet"]),
    default=default_of("encoder_teacher"),
    show_default=True,
    help=_HELP["encoder_teacher"],
)
@click.option(
    "--teacher-epochs",
    type=int,
    default=default_of("teacher_epochs"),
    show_default=True,
    help=_HELP["teacher_epochs"],
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="RunConfig JSON (or DistillConfig JSON alone); options below override it.",
)
@click.option("--enc-layers", type=int, default=None, help=_SIZE_OPTIONS["enc_layers"])
@click.option("--dec-layers", type=int, default=None, help=_SIZE_OPTIONS["dec_layers"])
@click.option("--dec-hidden", type=int, default=None, help=_SIZE_OPTIONS["dec_hidden"])
@click.option("--stage1-epochs", type=int, default=None, help=_SIZE_OPTIONS["stage1_epochs"])
@click.option("--stage2-epochs", type=int, default=None, help=_SIZE_OPTIONS["stage2_epochs"])
@click.option("--max-reply-tokens", type=int, default=None, help=_SIZE_OPTIONS["max_reply_tokens"])
@click.option("--seed", type=int, default=None)
@click.option("--int8/--no-int8", default=default_of("int8"), show_default=True, help=_HELP["int8"])
@click.option(
    "--handoff-score",
    type=click.Choice([AUTO, *HANDOFF_SCORES]),
    default=default_of("handoff_score"),
    show_default=True,
    help=_HELP["handoff_score"],
)
@_corpus_option("--ood", "ood_corpus")
@click.option(
    "--no-ood",
    is_flag=True,
    default=False,
    help="Calibrate the handoff without out-of-domain rows, even where the data folder has "
    "its corpus (ood_corpus.jsonl, `chatdistill ood-corpus`; used when --ood and --config "
    "name none).",
)
@_corpus_option("--unlabelled", "unlabelled_corpus")
@click.option(
    "--teacher-max-minutes", type=float, default=None, help=_cap_help("teacher_max_minutes")
)
@click.option(
    "--stage1-max-minutes", type=float, default=None, help=_cap_help("stage1_max_minutes")
)
@click.option(
    "--stage2-max-minutes", type=float, default=None, help=_cap_help("stage2_max_minutes")
)
@click.option(
    "--device",
    default=None,
    help=_HELP["device"] + " Default: the --config file's, else auto.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes (one per GPU): more than 1 starts the run under torchrun, data-parallel; "
    "the same as `torchrun --nproc-per-node N -m chat_api.cli distill ...`.",
)
def distill(
    data_path: Path | None,
    out: Path,
    knowledge: Path | None,
    split: str,
    work_dir: Path | None,
    reply_budget: int,
    replies_per_intent: int,
    eval_replies: int,
    encoder_teacher: str,
    teacher_epochs: int,
    config_file: Path | None,
    int8: bool,
    handoff_score: str,
    teacher_max_minutes: float | None,
    stage1_max_minutes: float | None,
    stage2_max_minutes: float | None,
    ood_corpus: Path | None,
    no_ood: bool,
    unlabelled_corpus: Path | None,
    device: str | None,
    nproc: int,
    **sizes: Any,
) -> None:
    """Distil a student from the teachers on a labelled file and export a bundle."""
    if nproc > 1:
        _relaunch(nproc)
    knobs = {
        "split": split,
        "reply_budget": reply_budget,
        "replies_per_intent": replies_per_intent,
        "eval_replies": eval_replies,
        "encoder_teacher": encoder_teacher,
        "teacher_epochs": teacher_epochs,
        "int8": int8,
        "handoff_score": handoff_score,
    }
    given = click.get_current_context().get_parameter_source
    # An option left at its default (RunConfig's) does not override the --config file.
    knobs = {k: v for k, v in knobs.items() if given(k) is not ParameterSource.DEFAULT}
    if teacher_max_minutes is not None:
        knobs["teacher_max_minutes"] = _cap(teacher_max_minutes)
    if ood_corpus is not None and no_ood:
        raise click.UsageError("--ood names a corpus and --no-ood refuses one: pick one")
    if ood_corpus is not None or no_ood:
        knobs["ood_corpus"] = str(ood_corpus.resolve()) if ood_corpus else None
    if unlabelled_corpus is not None:
        knobs["unlabelled_corpus"] = str(unlabelled_corpus.resolve())
    if device is not None:
        knobs["device"] = device
    sizes = {k: v for k, v in sizes.items() if v is not None}
    stage_caps = {
        "stage1_max_minutes": stage1_max_minutes,
        "stage2_max_minutes": stage2_max_minutes,
    }
    sizes |= {name: _cap(value) for name, value in stage_caps.items() if value is not None}
    from distill_worker.data.ood_corpus import default_ood_corpus

    default_ood = default_ood_corpus(Settings().data_dir)
    config = _config(config_file, sizes, knobs, default_ood if default_ood.is_file() else None)
    _run(out, config, data_path=data_path, knowledge=knowledge, work_dir=work_dir)


def _relaunch(nproc: int) -> None:
    """Replace this process with torchrun starting `nproc` of it (less --nproc)."""
    from distill_worker.launch import strip_option, torchrun_command
    from distill_worker.ranks import under_torchrun

    if under_torchrun():
        raise click.UsageError("--nproc is for a plain start: under torchrun, leave it out")
    command = torchrun_command(nproc, "chat_api.cli", strip_option(sys.argv[1:], "--nproc"))
    click.echo(f"distill: starting {nproc} processes: {' '.join(command[1:8])} ...")
    sys.stdout.flush()
    os.execv(sys.executable, command)  # noqa: S606 - torchrun takes this process's place


def default_work_dir(data_dir: Path, out: Path) -> Path:
    """The run folder of a bundle path: the same `--out` resumes its run, and two bundles that
    share a name (`a/bundle`, `b/bundle`) no longer share, and refuse, each other's
    checkpoints."""
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10]
    return data_dir / "runs" / f"{out.name}-{digest}"


def _run(
    out: Path,
    config: RunConfig,
    *,
    data_path: Path | None = None,
    knowledge: Path | None = None,
    work_dir: Path | None = None,
) -> Path:
    """One run in this process, or this rank's part of it under torchrun."""
    settings = Settings()
    if out.exists():
        raise click.UsageError(f"{out} exists; bundles are immutable, pick a new --out folder")
    try:
        with ranks.whole_run(config.device):
            _distill(settings, out, config, data_path, knowledge, work_dir)
    except DeviceError as exc:
        raise click.UsageError(str(exc)) from None
    return out


def _distill(
    settings: Settings,
    out: Path,
    config: RunConfig,
    data_path: Path | None,
    knowledge: Path | None,
    work_dir: Path | None,
) -> None:
    """The run of `_run`, on every rank under torchrun: rank 0 prepares the responder and the
    teacher cache first (the others then find them ready); rank 0 reports the result."""
    from dataclasses import replace

    from distill_worker.pipeline import DistillRequest, run_distillation
    from distill_worker.teacher.base import TeacherSetupError
    from distill_worker.teacher.cache import TeacherCache
    from distill_worker.teacher.prepare import prepare_responder, prepared_responder_dir

    echo = ranks.main_log(click.echo)
    try:
        with ranks.main_first():
            responder_dir = prepare_responder(prepared_responder_dir(settings.data_dir), log=echo)
            cache = TeacherCache.in_store(settings)
    except TeacherSetupError as exc:
        raise click.ClickException(str(exc)) from None
    request = DistillRequest(
        out_dir=out,
        work_dir=work_dir or default_work_dir(settings.data_dir, out),
        responder_dir=responder_dir,
        config=config,
        data_path=data_path,
        knowledge_path=knowledge,
    )
    try:
        result = run_distillation(replace(request, teacher_cache=cache), log=click.echo)
    finally:
        cache.close()
    intent = result.metrics["intent"]
    echo(
        f"bundle {result.manifest.model_version}: accuracy {intent['accuracy']:.3f} "
        f"(teacher {intent['teacher']['accuracy']:.3f})"
        f"{cap_note(result.metrics.get('budgets'))}; deploy it with `chatdistill deploy {out}`"
    )


QUICKSTART_CONFIG = RunConfig(
    distill=DistillConfig(stage1_epochs=3, stage2_epochs=60, stage2_lr=1e-3),
    reply_budget=64,
    eval_replies=12,
    teacher_epochs=4,
    teacher_lr=1e-4,
)


@click.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option(
    "--serve/--no-serve", default=True, show_default=True, help="Start the API at the end."
)
@click.option(
    "--reply-budget",
    type=int,
    default=QUICKSTART_CONFIG.reply_budget,
    show_default=True,
    help=_HELP["reply_budget"],
)
def quickstart(host: str | None, port: int | None, serve: bool, reply_budget: int) -> None:
    """Prepare the teachers, distil a demo student for an online shop, deploy it, serve it."""
    from bundle_runtime.deploy import deploy_bundle
    from feedback import migrate
    from feedback.db import make_engine, make_session_factory, session_scope
    from feedback.models import ActorType

    settings = Settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = settings.data_dir / "quickstart" / f"demo-{stamp}"
    click.echo("quickstart: distilling a demo student (online shop) on this machine's CPU")
    _run(out, QUICKSTART_CONFIG.with_changes(reply_budget=reply_budget))
    engine = make_engine(settings)
    try:
        migrate.upgrade(engine)
        with session_scope(make_session_factory(engine)) as session:
            done = deploy_bundle(
                session,
                out,
                settings.bundles_dir,
                alias="production",
                reason="quickstart",
                actor_type=ActorType.CLI,
            )
            seeded = _seed_demo_corpus(session, QUICKSTART_CONFIG.distill.seed)
    finally:
        engine.dispose()
    click.echo(f"quickstart: {done.manifest.model_version} deployed as production")
    click.echo(
        f"quickstart: {seeded} demo examples stored as seed data for the continual loop "
        "(`chatdistill worker --beat` retrains from them plus the feedback)"
    )
    if not serve:
        return
    args = [sys.executable, "-m", "chat_api.cli", "serve"]
    if host:
        args += ["--host", host]
    if port:
        args += ["--port", str(port)]
    click.echo("quickstart: starting the API; chat at /v1/widget (see README) - Ctrl-C stops it")
    os.execv(sys.executable, args)  # noqa: S606 - replaces this process with the server


def _seed_demo_corpus(session: Session, seed: int) -> int:
    """The demo corpus the quickstart student learnt from, as seed examples: later runs of the
    loop train on them together with the feedback, so no intent is forgotten. -> rows added."""
    from distill_worker.data.demo_corpus import demo_utterances
    from distill_worker.data.importers.records import SeedRecord
    from distill_worker.data.importers.store import store_records

    records = [
        SeedRecord(text=r.text, context=tuple(r.context), intent=r.intent, reply=r.reply)
        for r in demo_utterances(seed=seed, with_replies=True)
    ]
    made = store_records(session, "demo", "chatdistill quickstart (built-in demo corpus)", records)
    return made.rows_added


@click.command("export")
@click.option(
    "--bundle",
    "source",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An existing bundle whose student weights are exported again.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New bundle folder.")
@click.option("--version", "version", default=None, help="New model version id.")
@click.option("--int8/--no-int8", default=True, show_default=True)
def export(source: Path, out: Path, version: str | None, int8: bool) -> None:
    """Export a bundle's student weights again (e.g. to add INT8 graphs), parity-checked."""
    from bundle_runtime.manifest import BundleError
    from distill_worker.stages.reexport import reexport_bundle

    if out.exists():
        raise click.UsageError(f"{out} exists; bundles are immutable, pick a new --out folder")
    try:
        manifest = reexport_bundle(source, out, version=version, int8=int8)
    except BundleError as exc:
        raise click.ClickException(f"{source}: {exc}") from None
    click.echo(f"exported {manifest.model_version} to {out} (graphs: {sorted(manifest.graphs)})")
