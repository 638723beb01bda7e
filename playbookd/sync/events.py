"""Recording events (an NPS response, a feature used) from the CLI or `POST /events`.

An event is stored before anything reacts to it, so an accepted event is never lost; an `id`
makes it idempotent, so a sender can retry a request whose answer it did not get; the same id
sent for another account is a conflict, never silently taken for a retry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError

from playbookd.errors import ConflictError, UserError
from playbookd.store.chunks import chunked
from playbookd.store.database import insert_ignore, transaction, utcnow
from playbookd.store.schema import accounts, events

FIELDS = {"account", "name", "data", "id", "occurred_at"}


@dataclass
class Recorded:
    added: int
    duplicates: int


def _unstorable_text(text: str) -> str | None:
    """Why PostgreSQL cannot store `text`, if it cannot: NUL, or a lone surrogate (not UTF-8)."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def _check_storable(data: Any, where: str) -> None:
    """Refuse, on every database alike, what PostgreSQL would refuse only at insert time (as an
    error that looks temporary): NaN and Infinity (JSON has neither; 1e400 parses to Infinity),
    NUL and unpaired surrogates in strings and keys."""
    stack: list[tuple[Any, str]] = [(data, "data")]
    while stack:
        value, path = stack.pop()
        problem = None
        if isinstance(value, dict):
            problem = next((f"has a key that {why}" for key in value if (why := _unstorable_text(str(key)))), None)
            stack += [(item, f"{path}.{key}") for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(item, f"{path}[{index}]") for index, item in enumerate(value)]
        elif isinstance(value, float) and not math.isfinite(value):
            problem = f"is {json.dumps(value)}, which is not a number JSON or a database can store"
        elif isinstance(value, str):
            problem = _unstorable_text(value)
        if problem:
            raise UserError(f"{where}: `{path}` {problem}")


def _text(item: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise UserError(f"{where}: `{key}` must be a non-empty string of at most 200 characters")
    problem = _unstorable_text(value)
    if problem:
        raise UserError(f"{where}: `{key}` {problem}")
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
    _check_storable(data, where)
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


def _check_ids(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Checked after the insert, inside its transaction: a concurrent request with the same id has
    either committed (and is seen here) or waits for this one, so no race hides a conflict."""
    keys = sorted({r["dedupe_key"] for r in rows if r["dedupe_key"]})
    stored: dict[str, str] = {}
    for chunk in chunked(keys, 500):
        query = select(events.c.dedupe_key, events.c.account_id).where(events.c.dedupe_key.in_(chunk))
        stored.update((key, account) for key, account in conn.execute(query))
    for index, r in enumerate(rows, start=1):
        if r["dedupe_key"] and stored[r["dedupe_key"]] != r["account_id"]:
            raise ConflictError(f"event {index}: id {r['dedupe_key']!r} is already used by an event of another "
                                "account; an id must name one event")


def record(engine: Engine, items: Sequence[Any]) -> Recorded:
    """All or nothing: every item is checked before any is stored, a conflicting id undoes the batch."""
    now = utcnow()
    rows = [row(item, f"event {index}", now) for index, item in enumerate(items, start=1)]
    try:
        with transaction(engine) as conn:
            _check_accounts(conn, rows)
            added = insert_ignore(conn, events, rows)
            _check_ids(conn, rows)
    except DataError as exc:  # a value the checks above missed: as permanent as they are
        raise UserError(f"the database cannot store these events: {str(exc.orig).splitlines()[0]}") from exc
    return Recorded(added, len(rows) - added)
