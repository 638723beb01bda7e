"""Typing source values: fixed types for well-known fields, inference widened across rows."""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, select, update

from playbookd.model import fields as F
from playbookd.model.account import encode, put_values
from playbookd.store.chunks import CHUNK
from playbookd.store.database import transaction
from playbookd.store.marks import touch
from playbookd.store.schema import accounts


def as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if value is None or isinstance(value, str) else str(encode(value))


class Typer:
    """Fixed types for well-known and declared fields; inference, widened across rows, for the rest."""

    def __init__(self, fixed: Mapping[str, str], known: Mapping[str, str]) -> None:
        self.fixed = fixed
        self.types = dict(known)  # inferred column types, starting from the store's
        self.dirty: set[str] = set()  # types to write to the `fields` table
        self.to_text: set[str] = set()  # columns that became text: stored values need restating
        self.named: set[str] = set()  # column names found storable

    def row(self, values: Mapping[str, Any], skip: Container[str],
            dated: bool = False) -> tuple[dict[str, Any], list[str]]:
        """The row's values typed, and what is wrong with them. `dated`: dates and datetimes as they
        are stored (model.account.encode), not as objects. What can be known per column (its name
        is storable, its type) is looked up once per column, not once per value."""
        typed: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        errors: list[str] = []
        fixed, types, named = self.fixed, self.types, self.named
        for name, raw in values.items():
            if name in skip:
                continue
            if name not in named:
                if why := _bad_name(name):
                    errors.append(why)
                    continue
                named.add(name)
            if raw.__class__ is str:
                if not raw.isascii() and (why := F.text_problem(raw)):
                    errors.append(f"{name}: {why}")
                    continue
                kind = fixed.get(name)
                if kind == F.STRING or (kind is None and types.get(name) == F.STRING):
                    typed[name] = raw if raw and not raw.isspace() else None  # text stays text: the hot path
                    continue
            else:
                kind = fixed.get(name)
            try:
                if kind is not None:
                    value = fixed_value(raw, kind)
                else:
                    kind, value = self._inferred(raw, types.get(name))
                    if kind is not None:
                        kinds[name] = kind
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                continue
            typed[name] = encode(value) if dated and kind in F.TEMPORAL and value is not None else value
        if kinds and not errors:
            self._widen(typed, kinds, values)
        return typed, errors

    @staticmethod
    def _inferred(raw: Any, known: str | None) -> tuple[str | None, Any]:
        if raw.__class__ is str:
            if known == F.STRING:
                # a text column stays text whatever comes: skip parsing (the hot path)
                return (F.STRING, raw) if raw and not raw.isspace() else (None, None)
            if raw.isascii() and raw.isdigit() and (raw[0] != "0" or len(raw) == 1):  # not "²", int() refuses it
                return F.INTEGER, int(raw)
            if known in _DATED and (value := _dated(raw, known)) is not None:
                return known, value
        return F.infer(raw)

    def _widen(self, typed: dict[str, Any], kinds: dict[str, str], raw: Mapping[str, Any]) -> None:
        for name, kind in kinds.items():
            old = self.types.get(name)
            if old == kind:
                continue
            new = F.widen(old, kind)
            if new != old:
                self.types[name] = new
                self.dirty.add(name)
                if new == F.STRING and old is not None:
                    self.to_text.add(name)
            if new == F.STRING and kind != F.STRING:
                typed[name] = as_text(raw[name])


def _bad_name(name: str) -> str | None:
    """A column name no database can store as a key of `data` (see F.text_problem), as a row problem."""
    if not name.isascii() and (why := F.text_problem(name)):
        return f"column {name!r}: its name {why}"
    return None


_DATED = frozenset({F.DATE, F.DATETIME})


def _dated(raw: str, known: str) -> Any:
    """A column inferred as dates keeps parsing as dates: try that before the other types (which
    `infer` tries first, each failing with an exception). Only text no other type reads: a plain
    date in a datetime column is still inferred a date (it widens, and stays a date)."""
    if known == F.DATETIME and ":" not in raw:
        return None
    try:
        return fixed_value(raw, known)
    except ValueError:
        return None


def _iso(raw: str, kind: str) -> Any:
    """The plainest ISO dates ("2026-11-24") and datetimes ("2026-11-24T09:00:00Z"), without the
    regular expressions F.coerce matches first; None: F.coerce decides (it reads the same values)."""
    if len(raw) < 10 or raw[4] != "-" or raw[7] != "-" or not raw.isascii():
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return day if kind == F.DATE else datetime(day.year, day.month, day.day)
        if kind == F.DATETIME and len(raw) >= 16 and _timed(raw):
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))  # as F.coerce reads it
    except ValueError:
        return None
    return None


def _timed(raw: str) -> bool:
    """`raw` (ASCII, "YYYY-MM-DD" first) goes on as F.coerce's datetimes do: "THH:MM" or " HH:MM"."""
    return (raw[:4].isdigit() and raw[5:7].isdigit() and raw[8:10].isdigit() and raw[10] in "T "
            and raw[11:13].isdigit() and raw[13] == ":" and raw[14:16].isdigit() and not raw[-1].isspace())


# past it a number may be beyond F.MAX_EXPONENT (or a float's range), which F.coerce refuses
_SHORT_NUMBER = 300


# the words a boolean column holds most: read as F.coerce reads them, without its stripping and sets
_PLAIN_BOOLEAN = {"true": True, "false": False, "yes": True, "no": False}


def fixed_value(raw: Any, kind: str) -> Any:
    """F.coerce, with shortcuts for the plainest text (same results, a third of the time)."""
    if raw.__class__ is str:
        if kind == F.STRING:
            return raw if raw and not raw.isspace() else None
        if kind == F.BOOLEAN and (flag := _PLAIN_BOOLEAN.get(raw)) is not None:
            return flag
        if kind in F.NUMERIC and raw.isdecimal() and (kind == F.INTEGER or len(raw) <= _SHORT_NUMBER):
            return int(raw)
        if (kind == F.DECIMAL and len(raw) <= _SHORT_NUMBER and raw.count(".") == 1
                and raw.replace(".", "").isdecimal()):
            return float(raw)
        if kind in F.TEMPORAL and (value := _iso(raw, kind)) is not None:
            return value
    return F.coerce(raw, kind)


def encoded(typed: Mapping[str, Any]) -> dict[str, Any]:
    return {name: encode(value) if isinstance(value, date) else value for name, value in typed.items()}


def merge(data: Mapping[str, Any], changes: Mapping[str, Any], supplied: Mapping[str, Any],
           at: str | None) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """New data and changes for the fields `supplied`; fields not supplied are kept.

    A change stays until an evaluation has seen it (engine.enroll consumes it), however many syncs
    run in between: several collapse into one (9 -> 5 -> 3 is a change from 9 to 3), and one that
    returns to where it started (9 -> 5 -> 9) is no change at all. `at` None records no change."""
    new_data, new_changes = dict(data), dict(changes)
    changed = put_values(new_data, new_changes, supplied, at)
    return new_data, new_changes, changed


def _unseen(conn: Connection, table: Table, ids: list[Any]) -> None:
    """The restated accounts, or the accounts of the restated contacts, are evaluated again."""
    if table is accounts:
        touch(conn, ids)
    else:
        touch(conn, conn.execute(select(table.c.account_id).where(table.c.id.in_(ids))).scalars())


def restate_as_text(engine: Engine, table: Table, names: set[str]) -> None:
    """A column that widened to text keeps text values in every stored row (accounts or contacts),
    or `eq: "1"` would miss a stored 1."""
    last: Any = None
    while True:
        with transaction(engine) as conn:
            query = select(table.c.id, table.c.data).order_by(table.c.id).limit(CHUNK)
            rows = conn.execute(query if last is None else query.where(table.c.id > last)).all()
            fixes = [{"b_id": r.id, "data": {k: as_text(v) if k in names else v for k, v in r.data.items()}}
                     for r in rows if any(not isinstance(r.data.get(n), str | None) for n in names)]
            if fixes:
                conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(data=bindparam("data")),
                             fixes)
                _unseen(conn, table, [fix["b_id"] for fix in fixes])
        if len(rows) < CHUNK:
            return
        last = rows[-1].id
