"""Recording events (an NPS response, a feature used) from the CLI or `POST /events`.

An event is stored before anything reacts to it, so an accepted event is never lost; an `id`
makes it idempotent, so a sender can retry a request whose answer it did not get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from playbookd.errors import UserError
from playbookd.store.database import insert_ignore, transaction, utcnow
from playbookd.store.schema import accounts, events

FIELDS = {"account", "name", "data", "id", "occurred_at"}


@dataclass
class Recorded:
    added: int
    duplicates: int


def _text(item: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise UserError(f"{where}: `{key}` must be a non-empty string of at most 200 characters")
    return value.strip()


def _when(value: Any, where: str, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{where}: `occurred_at` {value!r} is not an ISO 8601 datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)


def row(item: Any, where: str, now: datetime) -> dict[str, Any]:
    """One event as a table row; UserError naming `where` and the field when it is malformed."""
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected an object with account, name and data")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})")
    data = item.get("data", {})
    if not isinstance(data, dict):
        raise UserError(f"{where}: `data` must be an object, e.g. {{\"score\": 4}}")
    return {"account_id": _text(item, "account", where), "name": _text(item, "name", where), "data": data,
            "occurred_at": _when(item.get("occurred_at"), where, now), "received_at": now,
            "dedupe_key": _text(item, "id", where, required=False)}


def _check_accounts(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """An event must name a synced account: one for an unknown id would start nothing, silently."""
    ids = {r["account_id"] for r in rows}
    known = set(conn.execute(select(accounts.c.id).where(accounts.c.id.in_(ids))).scalars())
    for index, r in enumerate(rows, start=1):
        if r["account_id"] not in known:
            raise UserError(f"event {index}: unknown account {r['account_id']!r} (sync the account first)")


def record(engine: Engine, items: Sequence[Any]) -> Recorded:
    """All or nothing: every item is checked before any is stored."""
    now = utcnow()
    rows = [row(item, f"event {index}", now) for index, item in enumerate(items, start=1)]
    with transaction(engine) as conn:
        _check_accounts(conn, rows)
        added = insert_ignore(conn, events, rows)
    return Recorded(added, len(rows) - added)
