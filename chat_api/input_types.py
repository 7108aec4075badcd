"""Field types for input at the API's edges: refused with a 422 that names the field, never
passed on to the store to fail there as a 500.

    Text        free text without C0 control characters (tab, newline and CR allowed) or
                unpaired surrogates: PostgreSQL refuses NUL in text, and UTF-8 cannot carry
                a lone surrogate
    QueryTime   a datetime in 1970..9999 that converts to UTC without overflowing; a
                zone-less one is taken as UTC (the value always has a zone)
    Score       an integer that is not a boolean (`true` is not CSAT 1)
    Offset      a page offset bounded well inside a 64-bit integer
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, StrictInt

_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")

MIN_YEAR = 1970
MAX_YEAR = 9999
MAX_OFFSET = 10_000_000


def storable_text(value: str) -> str:
    """The value, unchanged, when it holds no character the store cannot keep."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        code = ord(found.group())
        kind = "an unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
        raise ValueError(
            f"contains {kind} (U+{code:04X}) at position {found.start()}; remove it "
            "(tab, newline and carriage return are the only control characters allowed)"
        )
    return value


def utc_range(value: dt.datetime) -> dt.datetime:
    """The value, unchanged, when it lies in 1970..9999 once converted to UTC."""
    try:
        utc = value.astimezone(dt.UTC) if value.tzinfo is not None else value
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} falls outside the dates this API handles once converted to "
            f"UTC; give a date between {MIN_YEAR} and {MAX_YEAR}"
        ) from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(
            f"year {utc.year} (in UTC) is out of range; give a date between {MIN_YEAR} and "
            f"{MAX_YEAR}"
        )
    return value


def taken_as_utc(value: dt.datetime) -> dt.datetime:
    """A zone-less datetime is taken as UTC; one with a zone is kept as given."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


Text = Annotated[str, AfterValidator(storable_text)]
QueryTime = Annotated[dt.datetime, AfterValidator(utc_range), AfterValidator(taken_as_utc)]
Score = StrictInt
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")]
