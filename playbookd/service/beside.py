"""Delivery runs on a thread beside other work of `run --once`, until that work ends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from playbookd.delivery.outbox import DeliveryReport
from playbookd.delivery.senders import SenderFailed

log = logging.getLogger("playbookd.cycle")
IDLE_SECONDS = 0.5  # between runs that found nothing due: the work beside has not committed more yet


class Beside:
    """`with Beside(deliver): work()` runs `deliver(stop)` again and again on a thread while `work`
    runs, pausing when a run sent nothing. On leaving, the thread's last run ends before the block
    does: after a normal end it goes on until nothing is due, after an exception (an interrupt
    included) it is stopped as a signal stops delivery, handing back what it had claimed.

    `reports` has every run's report; `errors` the failure of a sending process, after which no
    run is started beside (the caller's next run reports on the processes again). Any other error
    of a run is raised on leaving, unless the block raised its own: then it is logged, as are `errors`."""

    def __init__(self, deliver: Callable[[threading.Event], DeliveryReport]) -> None:
        self.deliver = deliver
        self.reports: list[DeliveryReport] = []
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.done = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="delivery beside", daemon=True)

    def __enter__(self) -> Beside:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            self.stop.set()
        self.done.set()
        try:
            self.thread.join()
        except BaseException:  # a second interrupt while the last run finishes: stop it, then leave
            self.stop.set()
            self.thread.join()
            raise
        if exc is None and self.failure is not None:
            raise self.failure
        if exc is not None:
            self._log_dropped()

    def _log_dropped(self) -> None:
        """The block raised its own error, which goes on up: what failed beside it would be lost otherwise."""
        if self.failure is not None:
            log.error("delivery beside advance failed too: %s: %s", type(self.failure).__name__, self.failure,
                      exc_info=(type(self.failure), self.failure, self.failure.__traceback__))
        for error in self.errors:
            log.error("delivery beside advance failed too: %s", error)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                report = self.deliver(self.stop)
            except SenderFailed as failed:  # what the others sent counts all the same
                self.reports.append(failed.report)
                self.errors.append(str(failed))
                return
            except BaseException as exc:  # raised in the caller's thread, where run --once reports it
                self.failure = exc
                return
            self.reports.append(report)
            if report.paused:  # the circuit is open: the caller's next run says so
                return
            if not (report.sent or report.failed or report.unknown or report.retried or report.skipped):
                self.done.wait(IDLE_SECONDS)
