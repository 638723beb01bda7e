"""The scheduler wrapper around APScheduler, with real threads."""

from __future__ import annotations

import threading
from datetime import timedelta

from playbookd.service.scheduler import Scheduler


def test_a_job_that_nudges_while_the_scheduler_stops_does_not_hang_the_stop() -> None:
    scheduler = Scheduler()
    started, release, nudged = threading.Event(), threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(10)
        scheduler.nudge("other")  # as the ranges job nudges delivery
        nudged.set()

    scheduler.start()
    scheduler.every("other", timedelta(hours=1), lambda: None, first_in=timedelta(hours=1))
    scheduler.every("nudger", timedelta(hours=1), job)  # an interval job, like the ranges job
    assert started.wait(10)
    stopper = threading.Thread(target=scheduler.shutdown, args=(True,))
    stopper.start()
    stopper.join(0.5)  # shutdown is now waiting for the running job
    release.set()
    stopper.join(10)
    assert not stopper.is_alive(), "shutdown deadlocked with a nudging job"
    assert nudged.is_set()
