"""Why a message waits: quiet hours in the recipient's own time zone, and the frequency cap."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, func, select

from playbookd.config.delivery import QuietHours
from playbookd.config.zones import zone as zone_named
from playbookd.runtime import Runtime
from playbookd.store import locks
from playbookd.store.database import aware
from playbookd.store.schema import outbox

BYPASS_CAP = "operational"


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


def _sent_in_window(conn: Connection, email: str, since: datetime) -> list[datetime]:
    # strictly after `since`: a message sent exactly one window ago no longer counts, so the hold it
    # causes always ends in the future (holding until "now" would defer the same row forever)
    return [t for (t,) in conn.execute(select(outbox.c.sent_at).where(
        outbox.c.to_addr == email, outbox.c.state.in_(["claimed", "sending", "sent", "unknown"]),
        outbox.c.sent_at > since).order_by(outbox.c.sent_at)) if t is not None]


def _cap_until(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime) -> datetime | None:
    cap = runtime.config.delivery.frequency_cap
    if cap is None or row.category == BYPASS_CAP:
        return None
    recent = [aware(t) for t in _sent_in_window(conn, row.to_addr, now - cap.per)]
    if len(recent) < cap.max:
        return None
    oldest = recent[-cap.max]
    assert oldest is not None
    return oldest + cap.per


def hold(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime) -> tuple[str, datetime] | None:
    """(reason, until) when this message must wait, else None."""
    quiet = runtime.config.delivery.quiet_hours
    if quiet is not None:
        until = next_allowed(now, row.timezone or runtime.config.timezone, quiet)
        if until is not None:
            return "quiet_hours", until
    until = _cap_until(runtime, conn, row, now)
    return ("frequency_cap", until) if until is not None else None


def cap_expired(runtime: Runtime, row: Row[Any], held: tuple[str, datetime]) -> bool:
    """A message the cap would hold past its deadline is no longer timely: skip it instead."""
    cap = runtime.config.delivery.frequency_cap
    created = aware(row.created_at)
    return held[0] == "frequency_cap" and cap is not None and created is not None and held[1] > created + cap.max_wait


def lock_recipients(conn: Connection, rows: list[Row[Any]]) -> None:
    """Replicas claiming mail for the same address take turns, so each sees the other's claims when
    it counts the frequency cap; sorted, so two of them never wait on each other in a circle."""
    if conn.dialect.name != "postgresql":
        return  # SQLite writers are serialised already
    for address in sorted({row.to_addr for row in rows}):
        locks.hold_for_transaction(conn, locks.RECIPIENTS, func.hashtext(address))
