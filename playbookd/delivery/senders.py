"""Sending processes beside the daemon's own: each has its event loop, Courier and connections,
claims its own batches under its own worker identity (store.leases), and paces at its share of
`delivery.rate_per_second`.

A sender is a spawned child (playbookd.workers) that dies with the daemon. A stop is passed on as
SIGTERM, on which the sender finishes the message it is sending and hands the rest of its batch
back, as the daemon's own delivery does; a second signal to the daemon ends it and, with it, every
sender. What a dead sender had in hand is settled by the next delivery run of any process
(delivery.recovery: its worker id names a dead process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from playbookd import workers
from playbookd.delivery.outbox import DeliveryReport
from playbookd.delivery.transports import Timed, Transport
from playbookd.errors import PlaybookdError
from playbookd.runtime import Runtime
from playbookd.store import state
from playbookd.store.database import connect, transaction

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from playbookd.delivery.courier import Courier

FAILURE = "sender_failure"  # the store's record of the last delivery run a sending process failed, for `status`
POLL_SECONDS = 0.2  # how soon a stop reaches the senders
NO_LIMIT = float("inf")  # a delivery run lasts as long as the queue has mail due; the pace bounds it


class SenderFailed(PlaybookdError):
    """A sending process failed or died during a delivery run; `report` has what every process reported."""

    def __init__(self, message: str, report: DeliveryReport) -> None:
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class FixedClock:
    """A clock stopped at `now` (`run --once --at`): a sending process can receive it, a lambda it cannot."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


_courier: Courier | None = None
_engine: Engine | None = None
_stop = threading.Event()
_times: list[float] = []  # this sending process's send times in the current run


def _stopwatch(inner: Transport) -> Transport:
    """A sending process's transports: each send's time goes back to the daemon with the run's report,
    so `playbookd_send_seconds` (the daemon's /metrics) counts every process's sends."""
    return Timed(inner, lambda _name, seconds: _times.append(seconds))


def _start(runtime: Runtime, share: int, setup: Callable[[], None] | None) -> None:
    """In the child: its own courier, paced at its share of the rate."""
    global _courier, _engine
    from playbookd.delivery.courier import Courier  # the courier imports this module

    if setup is not None:
        setup()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: _stop.set())
    _courier, _engine = Courier(runtime, _stopwatch, share=share), connect(runtime.config.database)


def _deliver(clock: Callable[[], datetime]) -> DeliveryReport:
    """In the child: one delivery run, until nothing is due or the daemon passes on a stop."""
    assert _courier is not None and _engine is not None, "the sender was not started"
    _stop.clear()
    _times.clear()
    report = _courier.deliver(_engine, _stop, clock)
    report.send_seconds = list(_times)
    return report


def _close() -> None:
    if _courier is not None:
        _courier.close()


class Senders:
    """`count` sending processes, started once and kept from one delivery run to the next."""

    def __init__(self, runtime: Runtime, count: int, share: int, setup: Callable[[], None] | None) -> None:
        self.args = (runtime, share, setup)
        self.pool: list[workers.Worker | None] = [None] * count

    def _worker(self, index: int) -> workers.Worker:
        worker = self.pool[index]
        if worker is None or worker.dead:
            worker = workers.Worker(_start, self.args, name=f"playbookd-sender-{index + 1}", interruptible=False)
            self.pool[index] = worker
        return worker

    def spawn(self) -> None:
        """Every sender started now, by the calling thread: a child dies with the thread that
        started it (PR_SET_PDEATHSIG), so one a short-lived thread started would die with it."""
        for index in range(len(self.pool)):
            self._worker(index)

    def start(self, clock: Callable[[], datetime]) -> list[workers.Worker]:
        busy = [self._worker(n) for n in range(len(self.pool))]
        for worker in busy:
            worker.submit(workers.Call(_deliver, (clock,), NO_LIMIT, f"sender {worker.pid}"))
        return busy

    def collect(self, busy: Sequence[workers.Worker], stop: threading.Event | None) -> tuple[
            list[DeliveryReport], list[str]]:
        """Wait for every sender's run. A stop is passed on at each poll until the run ends: one that
        came before the sender's run cleared its flag is not lost. It is passed on only once the sender
        said it is ready, its handler installed: until then SIGTERM would kill it."""
        reports, errors = [], []
        waiting = list(busy)
        while waiting:
            if stop is not None and stop.is_set():
                for worker in waiting:
                    if worker.free_at is not None:
                        _signal(worker, signal.SIGTERM)
            wait([w.conn for w in waiting if not w.dead], POLL_SECONDS)
            for worker in list(waiting):
                try:
                    reply = worker.receive()
                except workers.WorkerDied as exc:  # it could not even start
                    if stop is not None and stop.is_set() and worker.process.exitcode == -signal.SIGTERM:
                        waiting.remove(worker)  # the stop (sent to the process group) came first: no failure
                        continue
                    reply = workers.Reply(workers.Call(_deliver, (), NO_LIMIT, "sender"), error=exc)
                if reply is None and not worker.dead:
                    continue
                waiting.remove(worker)
                if reply is not None and reply.error is None:
                    reports.append(reply.value)
                else:
                    errors.append(str(reply.error) if reply is not None else f"sender {worker.pid} died")
                    worker.kill()
        return reports, errors

    def close(self) -> None:
        """Between runs: each sender quits its connections, then exits."""
        for worker in self.pool:
            if worker is None or worker.dead:
                continue
            try:
                if worker.call is None:  # one with a run never collected is only killed
                    with contextlib.suppress(PlaybookdError):  # it is killed below either way, closing its connections
                        workers.run(worker, workers.Call(_close, (), 30.0, f"sender {worker.pid} closing"))
            finally:
                worker.kill()
        self.pool = [None] * len(self.pool)


def _signal(worker: workers.Worker, signum: int) -> None:
    if worker.pid is not None and worker.process.exitcode is None:
        with contextlib.suppress(OSError):  # it exited meanwhile: collect() sees it
            os.kill(worker.pid, signum)


def note_failure(engine: Engine, error: str | None, now: datetime) -> None:
    """Keep the failure of this run in the store, where `status` (another process) reads it; a run in
    which every process did its part clears it."""
    if error is None and state.get(engine, FAILURE) is None:
        return  # the usual case: a read, not a write, each run
    with transaction(engine) as conn:
        if error is not None:
            state.write(conn, FAILURE, {"at": now.isoformat(), "error": error})
        elif state.read(conn, FAILURE) is not None:
            state.drop(conn, FAILURE)


def last_failure(engine: Engine) -> dict[str, str] | None:
    found: dict[str, str] | None = state.get(engine, FAILURE)
    return found


def merged(reports: Sequence[DeliveryReport]) -> DeliveryReport:
    """The reports of one delivery run over every process, as one."""
    total = DeliveryReport()
    for report in reports:
        for item in dataclasses.fields(DeliveryReport):
            value: Any = getattr(report, item.name)
            if isinstance(value, int):
                setattr(total, item.name, getattr(total, item.name) + value)
        total.errors += report.errors
        total.send_seconds += report.send_seconds
        total.paused = total.paused or report.paused
    return total
