"""Writing imported records: into the feedback store (one transaction) or to a JSONL file.

`import_into_store` reads nothing itself: it gets the records an importer has already read in
full, redacts PII (in the repository), skips examples already stored (by content hash, also
within the file) and commits once. With `dry_run` it does all of that and rolls back, so the
counts it reports are exactly what a real import would do, and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from distill_worker.data.importers.records import SeedRecord
from feedback.models import SeedImport
from feedback.redaction import redact_text
from feedback.repositories.seeds import NewSeedExample, SeedRepository


@dataclass(frozen=True)
class ImportReport:
    format: str
    source: str
    rows_read: int
    rows_added: int
    rows_duplicate: int
    intents: int
    rated: int
    dry_run: bool
    import_id: str | None  # None for a dry run

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        return (
            f"{self.format} {self.source}: {self.rows_read} rows read, {verb} {self.rows_added}, "
            f"{self.rows_duplicate} already stored or repeated; {self.intents} intents, "
            f"{self.rated} rated"
        )


def source_sha256(path: Path) -> str:
    """sha256 of the file, or of a folder's files (names and contents, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def store_records(
    session: Session,
    format_name: str,
    source: str,
    records: list[SeedRecord],
    file_sha256: str | None = None,
) -> SeedImport:
    """Add records as one seed import in the caller's transaction (no commit). Without a file
    digest (records built in code, not read from a file) the import is named by its content."""
    hashes = [r.content_hash() for r in records]
    if file_sha256 is None:
        file_sha256 = hashlib.sha256("".join(hashes).encode()).hexdigest()
    examples = [
        NewSeedExample(
            corpus=format_name,
            split=r.split,
            text=r.text,
            context=list(r.context),
            intent=r.intent,
            reply=r.reply,
            reward=r.reward,
            meta=r.meta,
            content_hash=h,
        )
        for r, h in zip(records, hashes, strict=True)
    ]
    return SeedRepository(session).add_import(
        format=format_name, source=source, file_sha256=file_sha256, examples=examples
    )


def import_into_store(
    session_factory: sessionmaker[Session],
    format_name: str,
    path: Path,
    records: list[SeedRecord],
    *,
    dry_run: bool = False,
) -> ImportReport:
    session = session_factory()
    try:
        made = store_records(session, format_name, str(path), records, source_sha256(path))
        report = ImportReport(
            format=format_name,
            source=str(path),
            rows_read=made.rows_read,
            rows_added=made.rows_added,
            rows_duplicate=made.rows_duplicate,
            intents=len({r.intent for r in records if r.intent}),
            rated=sum(1 for r in records if r.reward is not None),
            dry_run=dry_run,
            import_id=None if dry_run else str(made.id),
        )
        if dry_run:
            session.rollback()
        else:
            session.commit()
        return report
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _redacted(record: SeedRecord) -> SeedRecord:
    """The record with PII placeholders in its texts, as the store would keep it."""
    return replace(
        record,
        text=redact_text(record.text),
        context=tuple((role, redact_text(text)) for role, text in record.context),
        reply=redact_text(record.reply) if record.reply is not None else None,
    )


def write_jsonl(records: list[SeedRecord], out: Path) -> int:
    """Write the records (distinct, in file order, PII-redacted) as JSON lines, atomically;
    returns how many lines were written."""
    seen: Counter[str] = Counter()
    lines = []
    for record in records:
        key = record.content_hash()
        seen[key] += 1
        if seen[key] == 1:
            lines.append(json.dumps(_redacted(record).to_jsonl(), ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(lines)
