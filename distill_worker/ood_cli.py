"""`chatdistill ood-corpus`: build the out-of-domain file a run calibrates its handoff on."""

from __future__ import annotations

from pathlib import Path

import click

from distill_worker.data.loaders import DataError
from distill_worker.data.ood_corpus import SOURCES, build_ood_corpus, write_ood_corpus


@click.command("ood-corpus")
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder holding your copies of clinc150/, hwu64/ and banking77/ (any of them).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--exclude",
    multiple=True,
    help="A source or domain your bot covers, left out: e.g. banking77, clinc150:banking, "
    "clinc150:credit_cards, hwu64:email (repeat the option). Sources: " + ", ".join(SOURCES),
)
@click.option("--per-intent", type=int, default=25, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def ood_corpus(
    data_root: Path, out: Path, exclude: tuple[str, ...], per_intent: int, seed: int
) -> None:
    """Write a JSONL of messages about subjects other than yours (pass it to a run with
    `ood_corpus` in the --config file, or `--ood`): the questions the bot should hand off."""
    try:
        rows = build_ood_corpus(data_root, exclude=exclude, per_group=per_intent, seed=seed)
    except (DataError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    write_ood_corpus(rows, out)
    sources = sorted({row["source"] for row in rows})
    click.echo(f"{len(rows)} messages from {len(sources)} domains written to {out}")
