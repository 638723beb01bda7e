"""Due times: the next moment a time-based condition can give another answer for an account.

`older_than`, `within_last`, `within_next` and `beyond_next` compare a date field with now, so their
answer moves with the clock alone. For a value v and a span d (model.evaluation's semantics, to the
microsecond) the answer flips at:

    older_than, within_last   v + d + 1us            (true / false from then on)
    within_next               v - d, and v + 1us     (true from v - d, false once v is past)
    beyond_next               v - d                  (false from then on)

A span in calendar months has its edge on the calendar (`Months.before/after`), found exactly by
search. The due time of an account is the earliest such flip after now over every time-based leaf
of every condition it is evaluated with, inside `contacts:` conditions too (on each contact). It is
conservative: a flip of a leaf that cannot change the whole condition's answer still makes the
account due, which costs one evaluation of one account and never a missed entry. For the same
reason there is one due time per account, not per (account, playbook): a flip re-evaluates the
account for every playbook, which costs little more than for one and keeps a single indexed column.

Trend conditions (`dropped_by`, `rose_by`) move as the window slides over the score's history: no
flip time is computed for them, their playbook is evaluated over every account instead (`volatile`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playbookd.config.durations import Months
from playbookd.model.account import CONTACTS, AccountRecord, lookup
from playbookd.model.conditions import FUTURE, PAST, TREND, All, Any_, Condition, Contacts, Leaf, Not
from playbookd.model.evaluation import EPOCH, epoch_us, value_class

DAY_US = 86_400 * 1_000_000


def _walk(cond: Condition | None, inside_contacts: bool = False) -> Iterable[tuple[Leaf, bool]]:
    """Every leaf, with whether it tests a contact's field."""
    if cond is None:
        return
    if isinstance(cond, Leaf):
        yield cond, inside_contacts
    elif isinstance(cond, Not):
        yield from _walk(cond.item, inside_contacts)
    elif isinstance(cond, Contacts):
        yield from _walk(cond.where, True)
    elif isinstance(cond, All | Any_):
        for item in cond.items:
            yield from _walk(item, inside_contacts)


def volatile(cond: Condition | None) -> bool:
    """Whether the condition's answer can change with neither a write nor a computable flip time."""
    return any(leaf.op in TREND for leaf, _ in _walk(cond))


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _first(test: Callable[[int], bool], guess: int, low: int, high: int) -> int:
    """The first instant in [low, high] at which `test` (false, then true for good) is true; `guess`
    is checked first since it is almost always the answer."""
    if test(guess) and not test(guess - 1):
        return guess
    while low < high:
        middle = (low + high) // 2
        if test(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _calendar_flips(op: str, value_us: int, span: Months, tz: ZoneInfo) -> list[int]:
    reach = (span.count * 31 + 4) * DAY_US
    if op in PAST:  # true iff value < before(now): from the first instant whose edge passes the value
        def edge_passed(t: int) -> bool:
            return epoch_us(span.before(_at(t), tz), tz) > value_us
        guess = epoch_us(span.after(_at(value_us), tz), tz) + 1
        return [_first(edge_passed, guess, value_us, value_us + reach)]

    def edge_reached(t: int) -> bool:  # after(now) >= value: within_next may start, beyond_next ends
        return epoch_us(span.after(_at(t), tz), tz) >= value_us
    guess = epoch_us(span.before(_at(value_us), tz), tz)
    start = _first(edge_reached, guess, value_us - reach, value_us)
    return [start, value_us + 1] if op == "within_next" else [start]


def flips(leaf: Leaf, value_us: int, tz: ZoneInfo) -> list[int]:
    """The instants (epoch microseconds) at which the leaf's answer on this value changes."""
    if isinstance(leaf.value, Months):
        return _calendar_flips(leaf.op, value_us, leaf.value, tz)
    if value_class(leaf.value) != "n":
        return []
    span = int(leaf.value * 1_000_000)  # relative() compares with span * 1e6: the same whole microseconds
    if leaf.op in PAST:
        return [value_us + span + 1]
    if leaf.op == "within_next":
        return [value_us - span, value_us + 1]
    return [value_us - span]


class DueTimes:
    """The time-based leaves of a set of conditions, and each account's next flip among them."""

    def __init__(self, conds: Sequence[Condition | None], tz: ZoneInfo) -> None:
        self.tz = tz
        found: dict[tuple[Leaf, bool], None] = {}
        for cond in conds:
            for leaf, of_contact in _walk(cond):
                if leaf.op in PAST or leaf.op in FUTURE:
                    found[(leaf, of_contact)] = None
        self.leaves = [leaf for leaf, of_contact in found if not of_contact]
        self.contact_leaves = [leaf for leaf, of_contact in found if of_contact]
        self._fields, self._contact_fields = _by_field(self.leaves, tz), _by_field(self.contact_leaves, tz)
        self._now: datetime | None = None  # an evaluation asks at one `now` for every account
        self._now_us = 0

    def __bool__(self) -> bool:
        return bool(self.leaves or self.contact_leaves)

    def next_flip(self, record: AccountRecord, now: datetime) -> int | None:
        """The earliest flip after `now` (epoch microseconds), None if no leaf can flip again."""
        if now is not self._now:
            self._now, self._now_us = now, epoch_us(now, self.tz)
        now_us = self._now_us
        best = _earliest(record, self._fields, now_us, self.tz, None)
        if self.contact_leaves:
            for person in record.get(CONTACTS) or ():
                best = _earliest(person, self._contact_fields, now_us, self.tz, best)
        return best


class _Field:
    """The leaves testing one field: a span in seconds flips at a fixed offset from the value,
    computed once here rather than per account; a span in months needs the calendar."""

    def __init__(self, name: str, leaves: Sequence[Leaf], tz: ZoneInfo) -> None:
        self.name = name
        self.of_event = name.startswith("event.")  # else a plain get: what lookup() does, per account
        self.offsets = tuple(sorted({at for leaf in leaves if not isinstance(leaf.value, Months)
                                     for at in flips(leaf, 0, tz)}))
        self.calendar = [leaf for leaf in leaves if isinstance(leaf.value, Months)]


def _earliest(subject: AccountRecord, fields: Sequence[_Field], now_us: int, tz: ZoneInfo,
              best: int | None) -> int | None:
    """`best`, or an earlier flip after `now_us` of one of the subject's fields."""
    for field in fields:
        value: Any = lookup(subject, field.name) if field.of_event else subject.get(field.name)
        if value_class(value) != "t":
            continue
        value_us = epoch_us(value, tz)  # once per field, however many leaves test it
        for offset in field.offsets:  # ascending: the first after now is this field's earliest
            at = value_us + offset
            if at > now_us:
                if best is None or at < best:
                    best = at
                break
        for leaf in field.calendar:
            for at in flips(leaf, value_us, tz):
                if at > now_us and (best is None or at < best):
                    best = at
    return best


def _by_field(leaves: Sequence[Leaf], tz: ZoneInfo) -> list[_Field]:
    found: dict[str, list[Leaf]] = {}
    for leaf in leaves:
        found.setdefault(leaf.field, []).append(leaf)
    return [_Field(name, group, tz) for name, group in found.items()]
