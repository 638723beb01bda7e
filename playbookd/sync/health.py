"""What each source's latest sync left in the store: its counts, and whether it could be read.

Kept under `sync:<source>` (store.state), so `status`, /healthz and the metrics of any process
show it. `attempts` counts the syncs in a row that could not read the source; `next_retry` is when
the daemon tries again (None outside the daemon, or once the source was read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from playbookd.store.database import upsert
from playbookd.store.schema import state
from playbookd.sync.base import SourceReport

PREFIX = "sync:"
RetryIn = Callable[[int], timedelta]  # attempts so far -> how long until the next one


def record(conn: Connection, report: SourceReport, now: datetime, retry_in: RetryIn | None) -> dict[str, Any]:
    """Store the source's state after this sync; sets `report.retry_at` when it failed."""
    key = PREFIX + report.source
    previous = conn.execute(select(state.c.value).where(state.c.key == key)).scalar() or {}
    at = now.isoformat()
    failed = report.failure is not None
    attempts = report.attempts = int(previous.get("attempts") or 0) + 1 if failed else 0
    if failed and retry_in is not None:
        report.retry_at = now + retry_in(attempts)
    value = {**report.counts(), "at": at, "ok": not failed,
             "last_success": previous.get("last_success") if failed else at,
             "last_error": report.failure if failed else previous.get("last_error"),
             "last_error_at": at if failed else previous.get("last_error_at"),
             "attempts": attempts,
             "next_retry": report.retry_at.isoformat() if report.retry_at else None}
    upsert(conn, state, ["key"], [{"key": key, "updated_at": now, "value": value}])
    return value


def states(engine: Engine, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each source's stored state by name (only `names`, in their order, when given)."""
    with engine.connect() as conn:
        rows = conn.execute(select(state.c.key, state.c.value).where(state.c.key.startswith(PREFIX)))
        found = {key[len(PREFIX):]: value for key, value in rows if isinstance(value, dict)}
    if names is None:
        return dict(sorted(found.items()))
    return {name: found[name] for name in names if name in found}


def failing(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sources whose latest sync could not read them."""
    return {name: value for name, value in found.items() if value.get("ok") is False}
