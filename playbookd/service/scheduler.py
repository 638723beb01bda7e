"""The only module that knows APScheduler: named interval jobs on three serial executors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

WORK, DELIVERY, WEBHOOKS, EVENTS, CONTROL = "work", "delivery", "webhooks", "events", "control"


class Scheduler:
    """Sync and evaluation run one at a time on `work`; email delivery, webhooks and events each beside
    them (an event starts its playbook even during a long sync); `control` (leadership) is never stuck
    behind any of them."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            executors={name: ThreadPoolExecutor(1) for name in (WORK, DELIVERY, WEBHOOKS, EVENTS, CONTROL)},
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
        return None if job is None else job.trigger.interval

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, wait: bool) -> None:
        with self._lock:
            self._closing = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
