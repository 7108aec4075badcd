"""`chatdistill eval intents` and `chatdistill eval replies`: an exported bundle evaluated on a
data file, served by ONNX Runtime as the API serves it. `eval intents` needs no torch; `eval
replies` imports its evaluation (which does) when run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from bundle_runtime.manifest import BundleError
from distill_worker.data.loaders import DataError, load_utterances
from feedback.settings import Settings


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


# Options shared by the `eval` commands.
_BUNDLE = click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
_PRECISION = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True
)
_SPLIT = click.option("--split", default="val", show_default=True, help="Split of a CLINC150 JSON.")


@click.group("eval")
def evaluate() -> None:
    """Evaluate an exported bundle (ONNX Runtime, as served)."""


@evaluate.command("intents")
@_BUNDLE
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV text,category / CLINC150 JSON / JSONL with intents.",
)
@_SPLIT
@_PRECISION
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option(
    "--baseline-train",
    "baseline_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also train TF-IDF + logistic regression on this file (the rows the bundle was "
    "distilled from) and score it on the same rows: `baseline` in the output, and "
    "`points_above_baseline` (the served accuracy minus the baseline's, in points).",
)
@click.option(
    "--baseline-split", default="train", show_default=True, help="Split of a CLINC150 JSON."
)
@click.option(
    "--teacher",
    "teacher_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also score the run's fine-tuned encoder teacher (its work folder's `encoder_teacher`, "
    "in torch) on the same rows: `teacher` in the output, and `share_of_teacher` (the "
    "student's classifier accuracy over the teacher's, both answering every row).",
)
def eval_intents(
    bundle_dir: Path,
    data_path: Path,
    split: str,
    precision: str,
    batch_size: int,
    baseline_path: Path | None,
    baseline_split: str,
    teacher_dir: Path | None,
) -> None:
    """Print intent metrics as JSON: accuracy, macro_f1, oos_recall (when the data has `oos`)."""
    from bundle_runtime.intents import evaluate_intents

    try:
        rows = load_utterances(data_path, split=split)
        train = (
            None if baseline_path is None else load_utterances(baseline_path, split=baseline_split)
        )
    except DataError as exc:
        _fail(str(exc))
    try:
        result = evaluate_intents(bundle_dir, rows, precision=precision, batch_size=batch_size)
    except BundleError as exc:
        _fail(str(exc))
    if train is not None:
        result |= _baseline(train, rows, result)
    if teacher_dir is not None:
        result |= _teacher(teacher_dir, bundle_dir, rows, result, batch_size)
    click.echo(json.dumps(result, indent=2))


def _baseline(train: list[Any], rows: list[Any], served: dict[str, Any]) -> dict[str, Any]:
    """The TF-IDF baseline's scores on `rows` (argmax, no handoff; on data with `oos` rows it
    predicts `oos` where it learned to), and the bundle's margin over it."""
    from bundle_runtime.intents import scores
    from distill_worker.stages.intent_baseline import fit_tfidf, tfidf_predictions

    try:
        model = fit_tfidf(train)
    except ValueError as exc:
        _fail(f"--baseline-train: {exc}")
    labelled = [r for r in rows if r.intent]
    figures = scores(tfidf_predictions(model, labelled), [r.intent for r in labelled])
    return {
        "baseline": {"model": "tfidf+logreg", "train_rows": len(train), **figures},
        "points_above_baseline": round(100 * (served["accuracy"] - figures["accuracy"]), 2),
    }


def _teacher(
    folder: Path, bundle_dir: Path, rows: list[Any], served: dict[str, Any], batch_size: int
) -> dict[str, Any]:
    """The encoder teacher's argmax scores on `rows`, its inputs built as the run built them
    (the bundle's `context_turns`), and the student's classifier accuracy as a share of its."""
    from bundle_runtime.intents import scores
    from bundle_runtime.manifest import load_manifest
    from bundle_runtime.source import format_source
    from distill_worker.teacher.base import TeacherError
    from distill_worker.teacher.encoder import EncoderTeacher

    try:
        teacher = EncoderTeacher.load(folder)
    except TeacherError as exc:
        _fail(f"--teacher: {exc}")
    turns = load_manifest(bundle_dir).context_turns
    labelled = [r for r in rows if r.intent]
    logits = teacher.intent_logits(
        [format_source(r.turns(), turns) for r in labelled], batch_size=batch_size
    )
    predicted = [teacher.labels[i] for i in logits.argmax(-1).tolist()]
    figures = scores(predicted, [r.intent for r in labelled])
    accuracy = figures["accuracy"] or 0.0
    share = round(served["classifier_accuracy"] / accuracy, 4) if accuracy else None
    return {
        "teacher": {"model": "encoder teacher (torch)", "folder": str(folder), **figures},
        "share_of_teacher": share,
    }


@evaluate.command("replies")
@_BUNDLE
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Prompts, with reference replies where there are: CSV with a reply column, JSONL "
    "with reply and context, or CLINC150 JSON (no replies: degeneration figures only).",
)
@click.option(
    "--train",
    "train_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The retrieval baseline's index (training prompts with replies). Default: the "
    "evaluated rows themselves, each row left out of its own search.",
)
@_SPLIT
@_PRECISION
@click.option("--limit", type=int, default=300, show_default=True, help="Rows, spread evenly.")
@click.option(
    "--teacher",
    "teacher_rows",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The in-process responder (from `chatdistill teacher prepare`) also answers this many "
    "of the rows; student, retrieval and teacher are scored on exactly those (slow on a CPU: "
    "seconds per reply). Its replies are cached in <data_dir>/eval_teacher_cache.db.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report to this file.",
)
def eval_replies(
    bundle_dir: Path,
    data_path: Path,
    train_path: Path | None,
    split: str,
    precision: str,
    limit: int,
    teacher_rows: int,
    json_out: Path | None,
) -> None:
    """Serve each prompt through the bundle as the API does and print reply figures as JSON:
    chrF and ROUGE-L against the references, degenerate share, length, handoffs, latency,
    what the guard sends, beside a TF-IDF retrieval baseline (and the teacher, --teacher N)."""
    from distill_worker.stages.reply_eval import evaluate_replies  # torch: imported when run
    from distill_worker.teacher.base import TeacherError

    try:
        rows = load_utterances(data_path, split=split)
        train = load_utterances(train_path, split="train") if train_path else None
    except DataError as exc:
        _fail(str(exc))
    settings = Settings()
    overrides = settings.serving.decoding.model_dump(exclude_none=True)
    teacher = None
    try:
        if teacher_rows:
            teacher = _eval_teacher(settings.data_dir, teacher_rows)
        report = evaluate_replies(
            bundle_dir,
            rows,
            train=train,
            precision="fp32" if precision == "fp32" else "int8" if precision == "int8" else "auto",
            decoding_overrides=overrides,
            limit=limit,
            teacher=teacher,
        )
    except (BundleError, ValueError, TeacherError) as exc:
        _fail(str(exc))
    finally:
        if teacher is not None:
            teacher[2].close()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n", encoding="utf-8")
    click.echo(text)


def _eval_teacher(data_dir: Path, rows: int) -> tuple[Any, int, Any]:
    """(the prepared in-process responder, rows, its reply cache) for `eval replies --teacher`."""
    from distill_worker.teacher.cache import TeacherCache
    from distill_worker.teacher.local import LocalResponder
    from distill_worker.teacher.prepare import prepared_responder_dir

    folder = prepared_responder_dir(data_dir)
    if not (folder / "config.json").is_file():
        _fail(f"no responder in {folder}: run `chatdistill teacher prepare` first")
    return (
        LocalResponder(folder),
        rows,
        TeacherCache.in_sqlite_file(data_dir / "eval_teacher_cache.db"),
    )
