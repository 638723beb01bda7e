"""Health in the store: a computed score written into an account, and the history trends read.

History is kept per day in the configured time zone, for the days a score moved: each such row has
the day's last score and colour and its highest and lowest, the score before its first move
included. So the highest score within a window is the highest of its rows and the current score,
and an unchanged account costs no rows at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select

from playbookd.model.account import HISTORY, AccountRecord, put_values
from playbookd.store.bulk import upsert_rows
from playbookd.store.chunks import chunked
from playbookd.store.schema import health_history

DayRow = tuple[date, float | None, float | None]  # day, highest, lowest


def apply(data: dict[str, Any], changes: dict[str, Any], values: Mapping[str, Any], at: str | None) -> bool:
    """Write health_score and health_color into an account's stored data, each move a change that
    playbooks' `changed*` see (none when `at` is None: a first score is no change). True if one moved."""
    return put_values(data, changes, values, at)


@dataclass(frozen=True)
class Move:
    account_id: str
    before: float | None
    after: float | None
    color: str | None


def record_moves(conn: Connection, moves: list[Move], day: date, now: datetime) -> None:
    """Today's row of each account whose health moved: last score and colour, highest and lowest."""
    for batch in chunked(moves):
        ids = [m.account_id for m in batch]
        query = select(health_history).where(health_history.c.day == day, health_history.c.account_id.in_(ids))
        earlier = {row.account_id: row for row in conn.execute(query)}
        rows = []
        for move in batch:
            old = earlier.get(move.account_id)
            seen = [v for v in (move.before, move.after, *((old.high, old.low) if old else ())) if v is not None]
            rows.append({"account_id": move.account_id, "day": day, "score": move.after, "color": move.color,
                         "high": max(seen, default=None), "low": min(seen, default=None), "updated_at": now})
        upsert_rows(conn, health_history, ["account_id", "day"], rows)


def history(conn: Connection, ids: Iterable[str], since: date) -> dict[str, list[DayRow]]:
    """Each account's rows from `since` on, oldest first."""
    found: dict[str, list[DayRow]] = {}
    for batch in chunked(list(ids)):
        query = (select(health_history.c.account_id, health_history.c.day, health_history.c.high,
                        health_history.c.low)
                 .where(health_history.c.account_id.in_(batch), health_history.c.day >= since)
                 .order_by(health_history.c.account_id, health_history.c.day))
        for account_id, day, high, low in conn.execute(query).all():  # fetched at once, unpacked: cheaper
            found.setdefault(account_id, []).append((day, high, low))
    return found


def attach(conn: Connection, records: list[AccountRecord], since: date | None) -> None:
    """Give each record its history from `since` on, for trend conditions; None: nothing evaluated needs it."""
    if since is None or not records:
        return
    rows = history(conn, [r["id"] for r in records], since)
    for record in records:
        record[HISTORY] = tuple(rows.get(record["id"], ()))


def scores_before(conn: Connection, ids: Iterable[str], day: date) -> dict[str, float | None]:
    """Each account's score as `day` began: its newest row before it. Accounts first scored on `day`
    or later are absent."""
    found: dict[str, tuple[date, float | None]] = {}
    for batch in chunked(list(ids)):
        query = (select(health_history.c.account_id, health_history.c.day, health_history.c.score)
                 .where(health_history.c.account_id.in_(batch), health_history.c.day < day))
        for row in conn.execute(query):
            if row.account_id not in found or found[row.account_id][0] < row.day:
                found[row.account_id] = (row.day, row.score)
    return {account: score for account, (_, score) in found.items()}


def prune(conn: Connection, before: date) -> int:
    """Drop rows older than `before`; returns how many."""
    return int(conn.execute(delete(health_history).where(health_history.c.day < before)).rowcount or 0)


def oldest_day(conn: Connection) -> date | None:
    value = conn.execute(select(func.min(health_history.c.day))).scalar()
    return value if isinstance(value, date) else None
