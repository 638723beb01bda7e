"""Time zones by name, cached: ZoneInfo's own strong cache keeps only the last eight, so a
contact list with more zones than that would re-read tz files on every row."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The zone called `name`, or None when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
