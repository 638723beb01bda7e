"""Calendar schedules (`trigger: {schedule: "0 9 1 * *"}`) for validation and evaluation.

Cron expressions are parsed by service.scheduler, the one module that imports APScheduler; this
is the narrow helper lower layers use instead, named as the one exception in the layering
contract (setup.cfg), so a schedule means the same to `validate`, evaluation and the daemon's timer.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from playbookd.service.scheduler import cron_times, cron_trigger

MAX_CATCH_UP = timedelta(days=366)


def schedule_problem(expression: object, tz: tzinfo) -> str | None:
    """Why `expression` is not a schedule, else None."""
    if not isinstance(expression, str) or not expression.strip():
        return "'schedule' is a cron expression such as \"0 9 1 * *\" (09:00 on the 1st of each month)"
    try:
        cron_trigger(expression, tz)
    except ValueError as exc:
        return f"bad schedule {expression!r}: {exc}"
    return None


def occurrences(expression: str, tz: tzinfo, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
    """Occurrences (UTC) in (after, until], the earliest `limit` of them."""
    return cron_times(expression, tz, after, until, limit)


def latest(expression: str, tz: tzinfo, now: datetime, within: timedelta) -> datetime | None:
    """The latest occurrence in (now - within, now]. Looked for in a window that doubles from an hour,
    then paged through, so an every-minute schedule costs as little as a yearly one."""
    span = min(within, timedelta(hours=1))
    while not cron_times(expression, tz, now - span, now, limit=1):
        if span >= within:
            return None
        span = min(within, span * 2)
    after, last = now - span, None
    while found := cron_times(expression, tz, after, now, limit=1000):
        after = last = found[-1]
    return last
