"""Reading a CSV with a header into (line number, row) pairs, with line-numbered errors."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from distill_worker.data.loaders import DataError


def csv_rows(path: Path, needed: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """(`path:line`, row) for every data row; the header must name every column in `needed`.

    `line` is the row's first line in the file (a quoted field may span several lines).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(
                    f"{path}:1: the header lacks the column(s) {', '.join(missing)} "
                    f"(it has: {', '.join(header) or 'nothing'})"
                )
            start = reader.line_num + 1
            for row in reader:
                where = f"{path}:{start}"
                if None in row:
                    raise DataError(f"{where}: more fields than the header has; quote the text")
                if any(v is None for v in row.values()):
                    raise DataError(f"{where}: fewer fields than the header has")
                yield where, {k.strip(): v for k, v in row.items()}
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
