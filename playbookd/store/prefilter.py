"""The parts of a condition SQL can answer, as a WHERE over the accounts table: a pre-filter.

`where` is true for every account the condition can be true for (a superset: the rules engine still
decides on each account it lets through) and None when SQL cannot narrow the condition at all. What
it answers, and how it keeps the reference semantics (model.evaluation) on the safe side:

- `eq`/`in` on text, number and boolean literals, `gt`/`gte`/`lt`/`lte`/`between` on numbers: a
  value compares only within its class, so a match needs the stored JSON value of that class, which
  is what the SQL tests (SQLite's json_extract gives true as 1: more candidates, never fewer). A
  number's bound is widened by a relative 1e-15 and made inclusive: SQL compares the stored text,
  the reference the float Python read from it.
- the same on dates and datetimes, and `older_than`, `within_last`, `within_next`, `beyond_next`:
  an instant's stored ISO text starts with its date on its own wall clock, at most a day from the
  date in UTC whatever the offset, so the date prefix is compared with the edge's date widened by
  two days; a value not in that form is let through.
- `exists: true`; the audience (`segment: {in: [...]}`) on its own column.
- `all` keeps the parts it answers; `any` is answered only if every branch is. Anything else (`not`,
  `ne`, `not_in`, text ordering, which collations order differently, `contains`, `matches`, changes,
  trends, contacts, event fields) lets every account through.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Numeric, String, and_, case, func, literal, or_, true
from sqlalchemy.sql.elements import ColumnElement

from playbookd.config.durations import Months
from playbookd.model.conditions import FUTURE, PAST, All, Any_, Condition, Leaf
from playbookd.model.evaluation import instant, value_class
from playbookd.store.accounts import nul_escaped
from playbookd.store.schema import accounts

Where = ColumnElement[bool]
SLACK = timedelta(days=2)  # a wall-clock date is within a day of the UTC date; one more for safety
_ORDER = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_REL = Decimal("1e-15")  # relative: above a float's rounding (2**-53), far below any threshold's meaning


def where(cond: Condition | None, now: datetime, tz: ZoneInfo, dialect: str) -> Where | None:
    """A WHERE true for every account `cond` can be true for at `now`; None: it cannot narrow."""
    if cond is None:
        return None
    return _Compiler(now, tz, dialect).node(cond)


def any_of(parts: list[Where | None], dialect: str) -> Where | None:
    """The accounts any of the parts lets through (None if one lets every account through), guarded
    on SQLite, whose JSON functions raise on text they cannot parse (NaN), and on PostgreSQL, whose
    refuse a document holding \\u0000: such a row gets through."""
    if not parts or any(p is None for p in parts):
        return None
    found = or_(*(p for p in parts if p is not None))
    if dialect == "sqlite":
        return case((func.json_valid(accounts.c.data) == 0, true()), else_=found)
    return case((nul_escaped(), true()), else_=found)


class _Compiler:
    def __init__(self, now: datetime, tz: ZoneInfo, dialect: str) -> None:
        self.now = now
        self.tz = tz
        self.pg = dialect == "postgresql"

    def node(self, cond: Condition) -> Where | None:
        if isinstance(cond, Leaf):
            try:
                return self.leaf(cond)
            except (OverflowError, ValueError):  # an edge beyond the calendar: let everyone through
                return None
        if isinstance(cond, All):
            parts = [p for p in (self.node(item) for item in cond.items) if p is not None]
            return and_(*parts) if parts else None
        if isinstance(cond, Any_):
            branches = [self.node(item) for item in cond.items]
            if not branches or any(b is None for b in branches):
                return None
            return or_(*(b for b in branches if b is not None))
        return None  # not, contacts

    def leaf(self, leaf: Leaf) -> Where | None:
        if leaf.field.startswith("event.") or leaf.field == "id" or '"' in leaf.field or "\\" in leaf.field:
            return None
        if leaf.field == "segment":
            values = leaf.value if leaf.op == "in" else (leaf.value,)
            if leaf.op in ("eq", "in") and all(isinstance(v, str) for v in values):
                return accounts.c.segment.in_(list(values))
            return None
        if leaf.op == "exists":
            return self._text(leaf.field).is_not(None) if leaf.value is True else None
        if leaf.op in ("eq", "in"):
            values = leaf.value if leaf.op == "in" else (leaf.value,)
            tests = [self._equal(leaf.field, v) for v in values]
            return None if any(t is None for t in tests) else or_(*(t for t in tests if t is not None))
        if leaf.op in _ORDER:
            return self._ordered(leaf.field, leaf.op, leaf.value)
        if leaf.op == "between":
            low, high = self._ordered(leaf.field, "gte", leaf.value[0]), self._ordered(leaf.field, "lte", leaf.value[1])
            return None if low is None or high is None else and_(low, high)
        if leaf.op in PAST or leaf.op in FUTURE:
            return self._relative(leaf)
        return None

    def _text(self, field: str) -> Any:
        """The stored value as SQL: text for JSON text, a number for a number (SQLite)."""
        if self.pg:
            return accounts.c.data.op("->>")(literal(field, String))
        return func.json_extract(accounts.c.data, f'$."{field}"')

    def _number(self, field: str) -> Any:
        if not self.pg:
            return self._text(field)
        node = accounts.c.data.op("->")(literal(field, String))
        return case((func.json_typeof(node) == "number", func.cast(self._text(field), Numeric)))

    def _equal(self, field: str, value: Any) -> Where | None:
        kind = value_class(value)
        if kind == "s":
            return self._text(field) == literal(value, String)  # type: ignore[no-any-return]
        if kind == "b":
            return self._text(field) == (("true" if value else "false") if self.pg else int(value))  # type: ignore[no-any-return]
        if kind == "n":
            return self._compare_number(field, "=", value)
        if kind == "t":
            return self._on_date(field, self._date(value) - SLACK, self._date(value) + SLACK)
        return None

    def _ordered(self, field: str, op: str, value: Any) -> Where | None:
        kind = value_class(value)
        if kind == "n":
            return self._compare_number(field, _ORDER[op], value)
        if kind == "t":
            edge = self._date(value)
            return self._on_date(field, edge - SLACK, None) if op in ("gt", "gte") else \
                self._on_date(field, None, edge + SLACK)
        return None

    def _compare_number(self, field: str, op: str, value: Any) -> Where | None:
        """Against a bound widened by far more than a float's rounding: the stored text is compared
        (exactly as numeric on PostgreSQL, as SQLite parses it) where the reference compares the float
        Python read from it, a hair away; strict comparisons are made inclusive likewise."""
        if not math.isfinite(value):
            return None
        exact = Decimal(value)
        slack = abs(exact) * _REL
        bounds = {"=": (exact - slack, exact + slack), ">": (exact - slack, None), ">=": (exact - slack, None),
                  "<": (None, exact + slack), "<=": (None, exact + slack)}[op]
        number = self._number(field)
        tests = [number >= self._bound(bounds[0])] if bounds[0] is not None else []
        if bounds[1] is not None:
            tests.append(number <= self._bound(bounds[1]))
        return and_(*tests)

    def _bound(self, value: Decimal) -> Any:
        return literal(value, Numeric) if self.pg else literal(float(value))

    def _relative(self, leaf: Leaf) -> Where | None:
        span = leaf.value
        if isinstance(span, Months):
            past, future = span.before(self.now, self.tz), span.after(self.now, self.tz)
        elif value_class(span) == "n":
            past, future = self.now - timedelta(seconds=span), self.now + timedelta(seconds=span)
        else:
            return None
        now, low, high = self._date(self.now), self._date(past), self._date(future)
        if leaf.op == "older_than":  # the value before the edge
            return self._on_date(leaf.field, None, low + SLACK)
        if leaf.op == "within_last":
            return self._on_date(leaf.field, low - SLACK, None)
        if leaf.op == "within_next":
            return self._on_date(leaf.field, now - SLACK, high + SLACK)
        return self._on_date(leaf.field, high - SLACK, None)

    def _date(self, value: date) -> date:
        """The instant's date in UTC."""
        return instant(value, self.tz).astimezone(UTC).date()

    def _on_date(self, field: str, low: date | None, high: date | None) -> Where:
        """The stored text's date between low and high (inclusive), or the text not an ISO date."""
        text = self._text(field)
        prefix: Any = func.substr(text, 1, 10)
        if self.pg:  # ordered byte by byte, as on SQLite, whatever the database's collation
            prefix = prefix.collate("C")
        iso = and_(func.substr(text, 5, 1) == "-", func.substr(text, 8, 1) == "-")
        tests = [prefix >= low.isoformat()] if low is not None else []
        if high is not None:
            tests.append(prefix <= high.isoformat())
        return or_(~iso, and_(*tests))


