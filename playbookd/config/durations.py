"""Durations as users write them: 45s 30min 12h 7d 2w 3mo 1y.

`s min h d w` are fixed lengths (timedelta). `mo` and `y` are calendar months and years
(Months): three months after 31 January is 30 April in the configured time zone, not 90 days
later. A bare `m` is refused: minutes or months? Intervals of settings take fixed units only.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_FIXED = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*(s|min|h|d|w|mo|y|m)\s*$")
_HINT = "use a whole number and a unit: 45s, 30min, 12h, 7d, 2w, 3mo, 1y"


@dataclass(frozen=True)
class Months:
    """A calendar span: whole months (a year is 12)."""

    count: int

    def after(self, moment: datetime, tz: ZoneInfo) -> datetime:
        return _add_months(moment, self.count, tz)

    def before(self, moment: datetime, tz: ZoneInfo) -> datetime:
        return _add_months(moment, -self.count, tz)

    def __str__(self) -> str:
        return f"{self.count // 12}y" if self.count and self.count % 12 == 0 else f"{self.count}mo"


Span = int | Months  # seconds, or calendar months


def _add_months(moment: datetime, months: int, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)
    index = local.year * 12 + local.month - 1 + months
    year, month = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])  # 31 Jan + 1mo = 28/29 Feb
    shifted = local.replace(year=year, month=month + 1, day=day)
    return shifted.astimezone(moment.tzinfo) if moment.tzinfo else shifted.replace(tzinfo=None)


def parse_span(text: object) -> timedelta | Months:
    """'7d' -> timedelta(days=7), '3mo' -> Months(3); ValueError with a hint otherwise."""
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"bad duration {text!r}: {_HINT}")
    number, unit = int(match.group(1)), match.group(2)
    if unit == "m":
        raise ValueError(f"bad duration {text!r}: did you mean {number}min or {number}mo?")
    if unit in ("mo", "y"):
        return Months(number * (12 if unit == "y" else 1))
    return timedelta(**{_FIXED[unit]: number})


def parse_duration(text: object) -> timedelta:
    """A fixed length, as settings take; months and years are refused (they vary in length)."""
    span = parse_span(text)
    if isinstance(span, Months):
        raise ValueError(f"bad duration {text!r}: months and years vary in length; use s, min, h, d or w here")
    return span


def as_span(value: timedelta | Months) -> Span:
    return value if isinstance(value, Months) else int(value.total_seconds())


def shift(moment: datetime, span: Span, tz: ZoneInfo) -> datetime:
    """`moment` plus `span`: seconds exactly, months on the calendar of `tz`."""
    return span.after(moment, tz) if isinstance(span, Months) else moment + timedelta(seconds=span)


_SIZES = (("w", 604800), ("d", 86400), ("h", 3600), ("min", 60))


def format_duration(value: timedelta | float | Months, largest: str = "w") -> str:
    """The way a user would write `value` (a timedelta, seconds or Months): the largest whole unit, at
    most `largest` (explain says '7d', as playbooks usually do, rather than '1w')."""
    if isinstance(value, Months):
        return str(value)
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    sizes = _SIZES[[unit for unit, _ in _SIZES].index(largest):]
    for unit, size in sizes:
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds) if float(seconds).is_integer() else seconds}s"
