"""The only module that knows APScheduler: named interval and cron jobs on serial executors, and
the cron expressions of calendar playbooks, parsed with APScheduler's own CronTrigger (model.cron
is the narrow door through which validation and evaluation reach them)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

WORK, DELIVERY, WEBHOOKS, EVENTS, REPORTS, CONTROL = "work", "delivery", "webhooks", "events", "reports", "control"


class Scheduler:
    """Sync and evaluation run one at a time on `work`; email delivery, webhooks and events each beside
    them (an event starts its playbook even during a long sync); the report figures beside them too
    (they only read, for seconds on a large base); `control` (leadership) is never stuck behind any."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            executors={name: ThreadPoolExecutor(1) for name in (WORK, DELIVERY, WEBHOOKS, EVENTS, REPORTS,
                                                                           CONTROL)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        # APScheduler's shutdown(wait=True) holds its job-store lock while it waits for running jobs;
        # a job that nudges another one needs that lock. Once shutdown begins, nudges are dropped.
        self._closing = False
        self._lock = threading.Lock()

    def every(self, name: str, interval: timedelta, func: Callable[[], None], executor: str = WORK,
              first_in: timedelta = timedelta(0)) -> None:
        """Run `func` every `interval`, first after `first_in`. Scheduling a job again with the same
        interval (a reload) keeps its next run: a SIGHUP must not push the next evaluation away."""
        seconds = max(interval.total_seconds(), 1)
        job = self._scheduler.get_job(name)
        if job is not None and job.trigger.interval.total_seconds() == seconds:
            job.modify(func=func)
            return
        self._scheduler.add_job(func, "interval", seconds=seconds, id=name, name=name, executor=executor,
                                replace_existing=True, next_run_time=datetime.now(UTC) + first_in)

    def once(self, name: str, func: Callable[[], None], executor: str = WORK) -> None:
        self._scheduler.add_job(func, "date", id=name, name=name, executor=executor, replace_existing=True,
                                run_date=datetime.now(UTC))

    def nudge(self, name: str) -> None:
        """Run an interval job as soon as possible instead of waiting for its next turn."""
        with self._lock:
            if self._closing:
                return
            job = self._scheduler.get_job(name)
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC))

    def run_at(self, name: str, when: datetime) -> None:
        """Run an interval job at `when` instead of its next turn (a retry sooner than the interval);
        its turns then continue every interval from there."""
        with self._lock:
            if self._closing:
                return
            job = self._scheduler.get_job(name)
            if job is not None:
                job.modify(next_run_time=when)

    def remove(self, name: str) -> None:
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def jobs(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name)
        return None if job is None else job.next_run_time

    def interval(self, name: str) -> timedelta | None:
        job = self._scheduler.get_job(name)
        return getattr(job.trigger, "interval", None) if job is not None else None

    def cron(self, name: str, expression: str, tz: tzinfo, func: Callable[[], None], executor: str = WORK) -> None:
        """Run `func` at every occurrence of a crontab expression in `tz`; the same expression again (a
        reload) keeps the job as it is."""
        trigger = cron_trigger(expression, tz)
        job = self._scheduler.get_job(name)
        if job is not None and str(job.trigger) == str(trigger) and job.trigger.timezone == trigger.timezone:
            job.modify(func=func)
            return
        self._scheduler.add_job(func, trigger, id=name, name=name, executor=executor, replace_existing=True)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._closing = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_PART = re.compile(r"^(\*|[a-z]{3}|\d)(?:-([a-z]{3}|\d))?(?:/(\d+))?$")


def _day(text: str) -> int:
    if text.isdigit():
        if int(text) > 7:
            raise ValueError(f"day of week {text} is past 7")
        return int(text) % 7  # 0 and 7 are both Sunday
    if text not in _DAYS:
        raise ValueError(f"unknown day of week {text!r}")
    return _DAYS.index(text)


def _weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler names: crontab counts 0 = Sunday, APScheduler 3
    counts 0 = Monday (so `1` would run on Tuesdays), and its steps count from Monday too."""
    days: set[int] = set()
    for part in field.lower().split(","):
        match = _DAY_PART.match(part)
        if match is None:
            raise ValueError(f"bad day of week {part!r}")
        first, last, step = match.groups()
        low = 0 if first == "*" else _day(first)
        high = 6 if first == "*" else (_day(last) if last else (6 if step else low))
        if last and last.isdigit() and int(last) == 7:
            high = 7  # 5-7: Friday to Sunday
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))
        if high < low:
            raise ValueError(f"bad day range {part!r}")
    return "*" if len(days) == 7 else ",".join(_DAYS[d] for d in sorted(days))


def cron_trigger(expression: str, tz: tzinfo) -> CronTrigger:
    """A crontab line (minute hour day-of-month month day-of-week) in `tz`; ValueError saying why not.
    Unlike crontab, a day of month and a day of week must both hold (`0 9 1-7 * mon`: first Monday)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a schedule has 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday),
                       timezone=tz)


def cron_times(expression: str, tz: tzinfo, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
    """Occurrences t with after < t <= until, at most `limit` (the earliest ones)."""
    trigger = cron_trigger(expression, tz)
    found: list[datetime] = []
    moment = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while moment is not None and moment <= until and len(found) < limit:
        found.append(moment.astimezone(UTC))
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return found
