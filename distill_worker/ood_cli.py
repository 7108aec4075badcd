"""`chatdistill ood-corpus`: build the out-of-domain file a run calibrates its handoff on."""

from __future__ import annotations

from pathlib import Path

import click

from distill_worker.data.loaders import DataError
from distill_worker.data.ood_corpus import (
    SOURCES,
    build_ood_corpus,
    default_ood_corpus,
    write_ood_corpus,
)
from feedback.settings import Settings


@click.command("ood-corpus")
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder holding your copies of clinc150/, hwu64/ and banking77/ (any of them).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: ood_corpus.jsonl in the data folder, where every run and the continual loop "
    "of that folder calibrate on it unless told otherwise (--ood, --no-ood).",
)
@click.option(
    "--exclude",
    multiple=True,
    help="A source or domain your bot covers, left out: e.g. banking77, clinc150:banking, "
    "clinc150:credit_cards, hwu64:email (repeat the option). Sources: " + ", ".join(SOURCES),
)
@click.option("--per-intent", type=int, default=25, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def ood_corpus(
    data_root: Path, out: Path | None, exclude: tuple[str, ...], per_intent: int, seed: int
) -> None:
    """Write a JSONL of messages about subjects other than yours: the questions the bot should
    hand off. Written to the data folder, it is every run's default (each run drops the rows
    about its own subjects, so one corpus serves every bot); elsewhere, pass it with `--ood`
    or `ood_corpus` in a --config file."""
    try:
        rows = build_ood_corpus(data_root, exclude=exclude, per_group=per_intent, seed=seed)
    except (DataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    default = default_ood_corpus(Settings().data_dir)
    write_ood_corpus(rows, out or default)
    sources = sorted({row["source"] for row in rows})
    click.echo(f"{len(rows)} messages from {len(sources)} domains written to {out or default}")
    if out is None or out.resolve() == default.resolve():
        click.echo(
            "every distill and loop run of this data folder calibrates its handoff on it "
            "(--no-ood: without); "
            "each drops the rows about its own subjects"
        )
