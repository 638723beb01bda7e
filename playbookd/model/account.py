"""Account records: typed Python values in memory, JSON-safe values in the store.

An AccountRecord is a plain dict: "id", "segment", then every non-null field typed
(date, aware datetime in UTC, int, float, bool, str). "_changes" maps each field that
changed in the latest sync of its source to its previous typed value (None if it was
null). Event evaluation adds "event": the event's data plus its "name". Where trend conditions are
evaluated, "_health_history" holds (day, highest, lowest) of the days the health score moved. When a
condition tests contacts, "_contacts" lists the account's contacts as typed dicts, in source order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from playbookd.model import fields as F

AccountRecord = dict[str, Any]
CHANGES = "_changes"
HISTORY = "_health_history"
CONTACTS = "_contacts"
INTERNAL = frozenset({CHANGES, HISTORY, CONTACTS})  # what a record carries beside its fields


def encode(value: Any) -> Any:
    """Typed value -> JSON-safe value (dates and datetimes as ISO 8601 text)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def decode(value: Any, kind: str | None) -> Any:
    """JSON-safe value -> typed value, by the field's declared or inferred type."""
    if value is None:
        return None
    if kind == F.DATETIME and isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if kind == F.DATE and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def account_types(custom: Mapping[str, str]) -> dict[str, str]:
    """Types of every account field: custom ones from the store, well-known ones win."""
    return {**custom, **F.DERIVED_FIELDS, **F.ACCOUNT_FIELDS}


def decode_account(
    account_id: str, segment: str, data: Mapping[str, Any], changes: Mapping[str, Any],
    types: Mapping[str, str],
) -> AccountRecord:
    record: AccountRecord = {}
    for name, raw in data.items():
        if raw is None:
            continue
        # only text of a date or datetime field is converted: the rest is kept without a call
        record[name] = decode(raw, types.get(name)) if type(raw) is str and name in types else raw
    record["id"] = account_id
    record["segment"] = segment
    record[CHANGES] = {
        name: decode(change.get("from"), types.get(name)) for name, change in changes.items()
    }
    return record


def lookup(record: Mapping[str, Any], name: str) -> Any:
    """A field's value, None when missing; `event.x` reads the event's data."""
    if name.startswith("event."):
        event = record.get("event") or {}
        return event.get(name[6:])
    return record.get(name)


def same(a: Any, b: Any) -> bool:
    """Equal as stored values: True == 1 in Python, but a flag turning into a count is a change."""
    if type(a) is type(b):
        return bool(a == b)
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def value_key(value: Any) -> tuple[Any, ...]:
    """A stored value as a cache key: its class too (True == 1 == 1.0, but a flag is no count), and a
    zero's sign (-0.0 == 0.0, yet they are two inputs; what reads them need not treat them alike).
    An absent field and a null one share a key: every condition reads a field through `lookup`,
    which gives None for both (model.evaluation), so they evaluate the same."""
    if value.__class__ is float and value == 0:
        return float, value, str(value)
    return value.__class__, value


def note_change(changes: dict[str, Any], name: str, old: Any, value: Any, at: str) -> None:
    """Record in `changes` (a field -> {from, at} map, as stored) that `name` went from `old` to
    `value` at `at`. A change not yet seen by an evaluation keeps its origin: 9 -> 5 -> 3 is one
    change from 9, and 9 -> 5 -> 9 is none."""
    pending = changes.get(name)
    origin = old if pending is None else pending.get("from")
    if pending is not None and same(origin, value):
        changes.pop(name)
    else:
        changes[name] = {"from": origin, "at": at}


def put_values(data: dict[str, Any], changes: dict[str, Any], values: Mapping[str, Any], at: str | None) -> bool:
    """Write `values` into `data` in place (None removes a field), noting each move in `changes`
    unless `at` is None (a first value is no change). True if any value moved."""
    moved = False
    for name, value in values.items():
        old = data.get(name)
        if same(old, value):
            continue
        moved = True
        if at is not None:
            note_change(changes, name, old, value, at)
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return moved
