"""Durations as users write them: 30m 12h 7d 2w."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: object) -> timedelta:
    """Parse '7d' into a timedelta; raise ValueError with a hint otherwise."""
    if isinstance(text, str):
        match = _PATTERN.match(text)
        if match:
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    raise ValueError(f"bad duration {text!r}: use a whole number and a unit, e.g. 30m, 12h, 7d, 2w")


_SIZES = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60))


def format_duration(value: timedelta | float, largest: str = "w") -> str:
    """The way a user would write `value` (a timedelta or seconds): the largest whole unit, at most
    `largest` (explain says '7d', as playbooks usually do, rather than '1w')."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    sizes = _SIZES[[unit for unit, _ in _SIZES].index(largest):]
    for unit, size in sizes:
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds) if float(seconds).is_integer() else seconds}s"
