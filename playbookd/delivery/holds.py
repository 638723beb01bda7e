"""Quiet hours in the recipient's own time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from playbookd.config.settings import QuietHours
from playbookd.config.zones import zone as zone_named


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _quiet_at(local: datetime, start: time, end: time) -> bool:
    now = local.time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # the window spans midnight


def _weekend(local: datetime) -> bool:
    return local.weekday() >= 5


def next_allowed(now: datetime, zone: str, quiet: QuietHours) -> datetime | None:
    """None when a message may go out at `now`; else the first moment it may (UTC)."""
    tz = zone_named(zone) or ZoneInfo("UTC")
    start, end = _clock(quiet.start), _clock(quiet.end)
    local = now.astimezone(tz)
    if not _blocked(local, start, end, quiet.weekends):
        return None
    candidate = local
    for _ in range(8 * 24 * 4):  # bounded: a week in 15-minute steps always finds a gap
        candidate = _next_boundary(candidate, end)
        if not _blocked(candidate, start, end, quiet.weekends):
            return candidate.astimezone(now.tzinfo)
    return None


def _blocked(local: datetime, start: time, end: time, weekends: bool) -> bool:
    return _quiet_at(local, start, end) or (weekends and _weekend(local))


def _next_boundary(local: datetime, end: time) -> datetime:
    """The next local `end` time after `local` (end of a quiet window), or the next midnight."""
    today_end = datetime.combine(local.date(), end, local.tzinfo)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), local.tzinfo)
    if today_end > local:
        return min(today_end, midnight)
    return midnight
