"""Delivery's own event loop and SMTP connections, kept from one delivery tick to the next.

A fresh event loop per tick would drop every connection with it; the courier keeps one loop, its
`delivery.smtp.connections` transports and one pace, and each tick runs on them. With
`delivery.processes` above 1 it also keeps that many less one sending processes (delivery.senders),
each a courier of its own, and a tick runs on all of them at once, each at its share of the rate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from playbookd.delivery import outbox
from playbookd.delivery.pacing import Pacer
from playbookd.delivery.senders import SenderFailed, Senders, merged, note_failure
from playbookd.delivery.transports import Transport, make_transport
from playbookd.runtime import Runtime
from playbookd.store.database import utcnow

log = logging.getLogger("playbookd.delivery")


class Courier:
    def __init__(self, runtime: Runtime, wrap: Callable[[Transport], Transport] = lambda t: t,
                 setup: Callable[[], None] | None = None, share: int | None = None, one_run: bool = False) -> None:
        """`share`: this courier is a sending process's, pacing at 1/share of the rate; else it is the
        daemon's, and starts the other processes (`setup` runs first in each, to configure its logs).
        `one_run`: its deliveries are parts of one run (run --once), so a failure in one of them stays
        in `status` after the later ones succeed; else each delivery is a run of its own."""
        delivery = runtime.config.delivery
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        count = delivery.smtp.connections if delivery.transport == "smtp" else 1
        self.transports = [wrap(make_transport(delivery)) for _ in range(count)]
        processes = share or delivery.processes
        self.pacer = Pacer(delivery.rate_per_second / processes)
        self.one_run = one_run
        self.failed = False  # a sending process failed in this one run
        self.senders = Senders(runtime, processes - 1, processes, setup) if share is None and processes > 1 else None

    def spawn(self) -> None:
        """Start the sending processes from this thread, before runs on a thread that ends sooner."""
        if self.senders is not None:
            self.senders.spawn()

    def deliver(self, engine: Engine, stop: threading.Event | None = None,
                clock: Callable[[], datetime] = utcnow) -> outbox.DeliveryReport:
        """Send what is due; one caller at a time (the daemon's delivery job is serial). A sending
        process that fails is reported by SenderFailed, with the others' report, once every process's run has ended."""
        if self.senders is None:
            return self._own(engine, stop, clock)
        busy = self.senders.start(clock)
        try:
            own = self._own(engine, stop, clock)
        finally:  # each sender's run ends before the next one starts, whatever this one did
            reports, errors = self.senders.collect(busy, stop)
        report = merged([own, *reports])
        if errors:
            log.info("delivered", extra={"delivery": report.line()})
            failure = SenderFailed(f"{len(errors)} sending process(es) failed: " + "; ".join(errors), report)
            note_failure(engine, str(failure), clock())
            self.failed = self.one_run
            raise failure
        if not self.failed:
            note_failure(engine, None, clock())
        return report

    def _own(self, engine: Engine, stop: threading.Event | None,
             clock: Callable[[], datetime]) -> outbox.DeliveryReport:
        return self.loop.run_until_complete(
            outbox.deliver(self.runtime, engine, self.transports, stop, clock, pacer=self.pacer))

    def close(self) -> None:
        if self.senders is not None:
            self.senders.close()
        for transport in self.transports:
            self.loop.run_until_complete(transport.close())
        self.loop.close()
