"""`delivery.rate_per_second` for a whole process: every connection takes its turn from one schedule."""

from __future__ import annotations

import asyncio
import time


class Pacer:
    """Keeps sends at or under `rate` per second, however many connections share it."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        # The slot is reserved before sleeping, so connections waiting together get distinct slots.
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
