"""`chatdistill import FORMAT PATH [--dry-run] [--out FILE.jsonl]`: seed the platform from files.

Into the feedback store by default (the `seed_examples` table, one transaction per import), or
with `--out` into a normalised JSON-lines file for `chatdistill distill --data`. A malformed file
stops at its first bad line with the line number, and nothing of it is imported.
"""

from __future__ import annotations

from pathlib import Path

import click

from distill_worker.data.importers import FORMATS
from distill_worker.data.importers.store import import_into_store, write_jsonl
from distill_worker.data.loaders import DataError
from feedback import migrate
from feedback.db import make_engine, make_session_factory
from feedback.errors import SchemaOutOfDate
from feedback.settings import Settings


@click.command("import")
@click.argument("format_name", metavar="FORMAT", type=click.Choice(sorted(FORMATS)))
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Read, check and count what would be added.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write normalised JSON lines (for `distill --data`) instead of the store.",
)
def import_corpus(format_name: str, path: Path, dry_run: bool, out: Path | None) -> None:
    """Import a data set in one of the public formats (banking77, clinc150, hwu64, bitext, star,
    taskmaster4) as seed data."""
    try:
        records = FORMATS[format_name](path)
    except (DataError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{exc}; nothing was imported") from None
    if not records:
        raise click.ClickException(f"{path}: no rows to import")
    if out is not None:
        if dry_run:
            click.echo(f"{format_name} {path}: {len(records)} rows read; would write {out}")
            return
        written = write_jsonl(records, out)
        click.echo(f"{format_name} {path}: {len(records)} rows read, {written} written to {out}")
        return
    settings = Settings()
    engine = make_engine(settings)
    try:
        if settings.database_url.startswith("sqlite"):
            migrate.upgrade(engine)
        migrate.require_head(engine)
        report = import_into_store(
            make_session_factory(engine), format_name, path, records, dry_run=dry_run
        )
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(report.summary() + (" (dry run: nothing written)" if dry_run else ""))
