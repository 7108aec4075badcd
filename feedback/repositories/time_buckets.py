"""Contiguous time windows for the monitor's grouped figure queries, and the bucket of a row
computed in SQL from its timestamp by comparing it with the bounds: the same comparisons a
query per window makes, on PostgreSQL and SQLite alike, with no epoch arithmetic to round
differently at a bound."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, case, literal_column

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class TimeBuckets:
    """Contiguous windows `[bounds[i], bounds[i + 1])`. The first start and the last end may be
    None: that side of the range is open (one window over all time is `(None, None)`)."""

    bounds: tuple[dt.datetime | None, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) < 2:
            raise ValueError("time buckets need at least a start and an end bound")
        inner = self.bounds[1:-1]
        if any(bound is None for bound in inner):
            raise ValueError("only the first and the last bound of time buckets may be open")
        # One window may be empty or inverted (it holds nothing); bounds between windows must
        # increase, or a row would be counted in the wrong one.
        known = [bound for bound in self.bounds if bound is not None]
        if inner and any(b <= a for a, b in pairwise(known)):
            raise ValueError("time bucket bounds must increase")

    @classmethod
    def even(cls, start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> TimeBuckets:
        """Windows of `step` from `start`, the last one cut at `end`."""
        if step <= dt.timedelta(0) or start >= end:
            raise ValueError("even time buckets need start < end and a positive step")
        bounds: list[dt.datetime | None] = [start]
        while (last := bounds[-1]) is not None and last < end:
            bounds.append(min(last + step, end))
        return cls(tuple(bounds))

    @property
    def count(self) -> int:
        return len(self.bounds) - 1

    def windows(self) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
        return list(pairwise(self.bounds))

    def within(self, stmt: _S, column: Any) -> _S:
        """Rows whose `column` falls in the whole range."""
        if self.bounds[0] is not None:
            stmt = stmt.where(column >= self.bounds[0])
        if self.bounds[-1] is not None:
            stmt = stmt.where(column < self.bounds[-1])
        return stmt

    def index(self, column: Any) -> ColumnElement[int]:
        """The bucket (0-based) of a row inside the range, from its `column` timestamp."""
        inner = self.bounds[1:-1]
        if not inner:
            return _integer(0)
        return case(
            *[(column < bound, _integer(i)) for i, bound in enumerate(inner)],
            else_=_integer(len(inner)),
        )


def _integer(value: int) -> ColumnElement[int]:
    """An integer written into the statement (bucket numbers: no parameter to type)."""
    return literal_column(str(value), Integer)
