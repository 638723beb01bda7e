"""Delivery's own event loop and SMTP connections, kept from one delivery tick to the next.

A fresh event loop per tick would drop every connection with it; the courier keeps one loop, its
`delivery.smtp.connections` transports and one pace, and each tick runs on them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from playbookd.delivery import outbox
from playbookd.delivery.pacing import Pacer
from playbookd.delivery.transports import Transport, make_transport
from playbookd.runtime import Runtime
from playbookd.store.database import utcnow


class Courier:
    def __init__(self, runtime: Runtime, wrap: Callable[[Transport], Transport] = lambda t: t) -> None:
        delivery = runtime.config.delivery
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        count = delivery.smtp.connections if delivery.transport == "smtp" else 1
        self.transports = [wrap(make_transport(delivery)) for _ in range(count)]
        self.pacer = Pacer(delivery.rate_per_second)

    def deliver(self, engine: Engine, stop: threading.Event | None = None,
                clock: Callable[[], datetime] = utcnow) -> outbox.DeliveryReport:
        """Send what is due; one caller at a time (the daemon's delivery job is serial)."""
        return self.loop.run_until_complete(
            outbox.deliver(self.runtime, engine, self.transports, stop, clock, pacer=self.pacer))

    def close(self) -> None:
        for transport in self.transports:
            self.loop.run_until_complete(transport.close())
        self.loop.close()
