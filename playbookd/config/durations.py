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


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
