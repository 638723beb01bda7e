"""`delivery.rate_per_second` for a whole process: every connection takes its turn from one schedule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

STOP_CHECK = 0.05  # seconds


class Pacer:
    """Keeps sends at or under `rate` per second, however many connections share it."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait for this connection's turn; False when `stopping` became true first (the turn is lost)."""
        # The slot is reserved before sleeping, so connections waiting together get distinct slots.
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        while (left := slot - time.monotonic()) > 0:
            if stopping():
                return False
            await asyncio.sleep(min(left, STOP_CHECK))  # a stop is noticed within STOP_CHECK at any rate
        return not stopping()
