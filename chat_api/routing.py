"""Routes whose store transaction ends in the handler's own thread.

A sync handler runs in a threadpool slot; FastAPI then validates its response in another slot
and only after that runs the session dependency's teardown, which commits. A transaction still
open when the handler returns therefore waits for a free slot, and on SQLite it holds the write
lock while it waits (every transaction there begins IMMEDIATE; on PostgreSQL it holds a pooled
connection). Under a crowd every slot can be taken by requests waiting for that very lock: the
API stalled for SQLite's 30 s busy timeout and answered 503s (`bench/load.py` reproduced it).

`TransactionEndingRoute` wraps every sync endpoint: when it returns, the sessions it was given
commit in the same thread; when it raises, they roll back there (what the dependency's teardown
would do later anyway). A handler that must keep something although it fails (a failed login)
commits that itself before raising, as before."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from chat_api.dependencies import per_ip_limit
from chat_api.errors import WIDGET_ERRORS

_T = TypeVar("_T")


def run_ending_transactions(
    sessions: list[Session], work: Callable[..., _T], *args: Any, **kwargs: Any
) -> _T:
    """Run `work` and end the sessions' transactions in this thread: commit when it returns,
    roll back when it raises."""
    try:
        result = work(*args, **kwargs)
    except BaseException:
        for session in sessions:
            session.rollback()
        raise
    for session in sessions:
        session.commit()
    return result


def ending_transactions(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sessions = [value for value in kwargs.values() if isinstance(value, Session)]
        return run_ending_transactions(sessions, endpoint, *args, **kwargs)

    return wrapper


class TransactionEndingRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = ending_transactions(endpoint)
        super().__init__(path, endpoint, **kwargs)


def widget_router() -> APIRouter:
    """The router of a widget route module: transactions ended per unit of work, the per-IP
    limit on every route, the widget's error bodies documented."""
    return APIRouter(
        route_class=TransactionEndingRoute,
        prefix="/v1/widget",
        tags=["widget"],
        dependencies=[Depends(per_ip_limit)],
        responses=WIDGET_ERRORS,
    )
