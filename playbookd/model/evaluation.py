"""Condition evaluation in plain Python: the reference semantics the rules engine must reproduce.

Values fall into classes that compare only among themselves: numbers (int and float, not
bool), booleans, text, and instants (dates are midnight in the configured time zone, naive
datetimes are UTC). A comparison across classes is false, never an error. Every operator
but `exists` and `changed` is false on a missing value; `ne` and `not_in` included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from playbookd.config.durations import Months, Span, format_duration
from playbookd.model import patterns
from playbookd.model.account import CHANGES, CONTACTS, HISTORY, encode, lookup
from playbookd.model.conditions import (
    CHANGE,
    FUTURE,
    PAST,
    TREND,
    All,
    Any_,
    Compared,
    Condition,
    Contacts,
    Leaf,
    Not,
    Trend,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


_CLASSES = {bool: "b", int: "n", float: "n", str: "s", date: "t", datetime: "t"}


def value_class(value: Any) -> str | None:
    """'n' number, 'b' boolean, 's' text, 't' instant; None for anything else."""
    kind = _CLASSES.get(type(value))  # the exact types a record holds: one look-up, called per value
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, float)):
        return "n"
    if isinstance(value, str):
        return "s"
    if isinstance(value, date):
        return "t"
    return None


def instant(value: date, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=tz)


def epoch_us(value: date, tz: ZoneInfo) -> int:
    """An instant as whole microseconds since 1970 (exact, unlike float seconds)."""
    if isinstance(value, datetime):
        return ((value if value.tzinfo else value.replace(tzinfo=UTC)) - EPOCH) // ONE_US
    return _midnight_us(value, tz)


@lru_cache(maxsize=8192)
def _midnight_us(day: date, tz: ZoneInfo) -> int:
    # an evaluation converts every account's dates, and most accounts share a few thousand days
    return (datetime(day.year, day.month, day.day, tzinfo=tz) - EPOCH) // ONE_US


def compare(a: Any, b: Any, tz: ZoneInfo) -> int | None:
    """-1, 0 or 1; None when the two cannot be compared (other classes, NaN)."""
    kind = value_class(a)
    if kind is None or kind != value_class(b):
        return None
    if kind == "t":
        a, b = instant(a, tz), instant(b, tz)
    if kind == "n" and (math.isnan(a) or math.isnan(b)):
        return None
    return int((a > b) - (a < b))


def equal(a: Any, b: Any, tz: ZoneInfo) -> bool:
    return compare(a, b, tz) == 0


_ORDER = {"gt": (1,), "gte": (0, 1), "lt": (-1,), "lte": (-1, 0)}


def relative(op: str, age_us: int, seconds: float) -> bool:
    """`age_us` is now minus the value, in microseconds; exact for any date Python can hold."""
    span = seconds * 1_000_000
    if op == "older_than":
        return age_us > span
    if op == "within_last":
        return age_us <= span
    if op == "within_next":
        return -span <= age_us <= 0
    return age_us < -span


def _relative(op: str, value: Any, span: Any, now: datetime, tz: ZoneInfo) -> bool:
    if value_class(value) != "t":
        return False
    if isinstance(span, Months):
        return _calendar(op, epoch_us(value, tz), now, span, tz)
    if value_class(span) != "n":
        return False
    return relative(op, epoch_us(now, tz) - epoch_us(value, tz), span)


def _calendar(op: str, value_us: int, now: datetime, span: Months, tz: ZoneInfo) -> bool:
    """The same four comparisons with a threshold on the calendar: now minus (or plus) the months."""
    if op in ("older_than", "within_last"):
        edge = epoch_us(span.before(now, tz), tz)
        return value_us < edge if op == "older_than" else value_us >= edge
    now_us, edge = epoch_us(now, tz), epoch_us(span.after(now, tz), tz)
    return now_us <= value_us <= edge if op == "within_next" else value_us > edge


def _contains(value: Any, item: Any, tz: ZoneInfo) -> bool:
    if isinstance(value, str):
        return isinstance(item, str) and item in value
    if isinstance(value, (list, tuple)):
        return any(equal(element, item, tz) for element in value)
    return False


def _changed(leaf: Leaf, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    changes = record.get(CHANGES) or {}
    changed = leaf.field in changes
    if leaf.op == "changed":
        return changed is leaf.value
    if not changed:
        return False
    value = changes[leaf.field] if leaf.op == "changed_from" else lookup(record, leaf.field)
    if isinstance(leaf.value, Compared):
        return value is not None and _present(leaf.value.op, value, leaf.value.value, now, tz)
    return equal(value, leaf.value, tz)


def _present(op: str, value: Any, expected: Any, now: datetime, tz: ZoneInfo) -> bool:
    """A leaf on a value that is there."""
    if op in _ORDER:
        return compare(value, expected, tz) in _ORDER[op]
    if op in ("eq", "ne"):
        return equal(value, expected, tz) is (op == "eq")
    if op in ("in", "not_in"):
        found = any(equal(value, item, tz) for item in expected)
        return found is (op == "in")
    if op == "between":
        low, high = compare(value, expected[0], tz), compare(value, expected[1], tz)
        return low is not None and high is not None and low >= 0 and high <= 0
    if op == "contains":
        return _contains(value, expected, tz)
    if op == "matches":
        return isinstance(value, str) and patterns.search(expected, value)
    if op in PAST or op in FUTURE:
        return _relative(op, value, expected, now, tz)
    raise ValueError(f"unknown operator {op!r}")


def window_start(span: Span, now: datetime, tz: ZoneInfo) -> date:
    """The first day of a trend window: the day, in the project's zone, `span` before `now`."""
    start = span.before(now, tz) if isinstance(span, Months) else now - timedelta(seconds=span)
    return start.astimezone(tz).date()


@lru_cache(maxsize=256)
def _window(within: Span, now: datetime, tz: ZoneInfo) -> tuple[date, date]:
    # the same for every account an evaluation reads: worked out once, not per account and condition
    return window_start(within, now, tz), now.astimezone(tz).date()


def trend_range(record: dict[str, Any], field: str, within: Span, now: datetime,
                tz: ZoneInfo) -> tuple[Decimal, Decimal, Decimal] | None:
    """(highest, lowest, current) of the score over the window's days, the current one included; None
    without a current score. A day's row holds the value before its first move too, so the score in
    effect when the window opened is always counted."""
    current = lookup(record, field)
    if value_class(current) != "n" or not math.isfinite(current):
        return None
    first, last = _window(within, now, tz)
    values = [Decimal(str(current))]
    for day, high, low in record.get(HISTORY) or ():
        if first <= day <= last:
            values += [Decimal(str(v)) for v in (high, low) if v is not None and math.isfinite(v)]
    return max(values), min(values), values[0]


def _trend(leaf: Leaf, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    trend: Trend = leaf.value
    found = trend_range(record, leaf.field, trend.within, now, tz)
    if found is None:
        return False
    high, low, current = found
    moved = high - current if leaf.op == "dropped_by" else current - low
    return moved >= Decimal(str(trend.points))


def evaluate_leaf(leaf: Leaf, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    if leaf.op in CHANGE:
        return _changed(leaf, record, now, tz)
    if leaf.op in TREND:
        return _trend(leaf, record, now, tz)
    value = lookup(record, leaf.field)
    if leaf.op == "exists":
        return (value is not None) is leaf.value
    if value is None:
        return False
    return _present(leaf.op, value, leaf.value, now, tz)


def contacts_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    people = record.get(CONTACTS)
    if people is None:  # a loader that forgot them would make every `none:` true: fail loudly instead
        raise ValueError(f"the contacts of account {record.get('id')} were not loaded")
    return list(people)


def matching_contacts(cond: Contacts, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> tuple[int, int]:
    """(contacts matching `where`, contacts in all)."""
    people = contacts_of(record)
    return sum(evaluate(cond.where, person, now, tz) for person in people), len(people)


def _contacts(cond: Contacts, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    if cond.quantifier == "any":
        return any(evaluate(cond.where, person, now, tz) for person in contacts_of(record))
    if cond.quantifier == "none":
        return not any(evaluate(cond.where, person, now, tz) for person in contacts_of(record))
    assert cond.count is not None
    matched, _ = matching_contacts(cond, record, now, tz)
    return _present(cond.count.op, matched, cond.count.value, now, tz)


def evaluate(cond: Condition, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    if isinstance(cond, Leaf):
        return evaluate_leaf(cond, record, now, tz)
    if isinstance(cond, Contacts):
        return _contacts(cond, record, now, tz)
    if isinstance(cond, Not):
        return not evaluate(cond.item, record, now, tz)
    if isinstance(cond, All):
        return all(evaluate(item, record, now, tz) for item in cond.items)
    return any(evaluate(item, record, now, tz) for item in cond.items)


@dataclass
class Explained:
    """One node of the explanation tree of a condition against one record."""

    kind: str
    result: bool
    field: str | None = None
    op: str | None = None
    expected: Any = None
    actual: Any = None
    children: list[Explained] = dataclass_field(default_factory=list)

    def lines(self, indent: int = 0) -> list[str]:
        mark = "✓" if self.result else "✗"
        pad = "  " * indent
        if self.kind != "leaf":
            head = [f"{pad}{mark} {self.kind}"]
            return head + [line for child in self.children for line in child.lines(indent + 1)]
        return [f"{pad}{mark} {self.field} {self.op} {_show(self.expected)} ({_show_actual(self.actual)})"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "result": self.result, "field": self.field, "op": self.op,
            "expected": _json_safe(self.expected), "actual": _json_safe(self.actual),
            "children": [child.to_dict() for child in self.children],
        }


def _show(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return str(encode(value))


def _show_actual(actual: Any) -> str:
    if isinstance(actual, dict) and "highest" in actual:
        return (f"actual: {_show(actual['current'])}, highest {_show(actual['highest'])}, lowest "
                f"{_show(actual['lowest'])} in the window")
    if isinstance(actual, dict) and "previous" in actual:
        return f"previous: {_show(actual['previous'])}, actual: {_show(actual['current'])}"
    return f"actual: {_show(actual)}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, date):
        return encode(value)
    return str(value)


def _expected(leaf: Leaf) -> Any:
    if (leaf.op in PAST or leaf.op in FUTURE) and (value_class(leaf.value) == "n" or isinstance(leaf.value, Months)):
        return format_duration(leaf.value, largest="d")
    return leaf.value


def _actual(leaf: Leaf, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> Any:
    current = lookup(record, leaf.field)
    if leaf.op in TREND:
        found = trend_range(record, leaf.field, leaf.value.within, now, tz)
        return current if found is None else {"current": current, "highest": float(found[0]),
                                              "lowest": float(found[1])}
    if leaf.op not in CHANGE:
        return current
    changes = record.get(CHANGES) or {}
    return {"changed": leaf.field in changes, "previous": changes.get(leaf.field), "current": current}


def describe(cond: Condition) -> str:
    """A condition as one line of text, for explain."""
    if isinstance(cond, Leaf):
        return f"{cond.field} {cond.op} {_show(_expected(cond))}"
    if isinstance(cond, Not):
        return f"not ({describe(cond.item)})"
    if isinstance(cond, Contacts):
        count = f" {cond.count.op} {_show(cond.count.value)}" if cond.count else ""
        return f"contacts {cond.quantifier}{count} where ({describe(cond.where)})"
    if not cond.items:
        return "always"
    joiner = " and " if isinstance(cond, All) else " or "
    return joiner.join(describe(item) if isinstance(item, Leaf) else f"({describe(item)})" for item in cond.items)


def _explain_contacts(cond: Contacts, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> Explained:
    matched, total = matching_contacts(cond, record, now, tz)
    op = cond.quantifier if cond.count is None else f"count {cond.count.op} {_show(cond.count.value)}"
    return Explained("leaf", _contacts(cond, record, now, tz), "contacts", op, describe(cond.where),
                     f"{matched} of {total} contacts match")


def explain(cond: Condition, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> Explained:
    if isinstance(cond, Leaf):
        return Explained("leaf", evaluate_leaf(cond, record, now, tz), cond.field, cond.op,
                         _expected(cond), _actual(cond, record, now, tz))
    if isinstance(cond, Contacts):
        return _explain_contacts(cond, record, now, tz)
    if isinstance(cond, Not):
        child = explain(cond.item, record, now, tz)
        return Explained("not", not child.result, children=[child])
    children = [explain(item, record, now, tz) for item in cond.items]
    if isinstance(cond, All):
        return Explained("all", all(child.result for child in children), children=children)
    return Explained("any", any(child.result for child in children), children=children)


__all__ = ["Any_", "Explained", "evaluate", "explain"]
