"""When to try again after a temporary failure: one schedule for email and webhooks alike."""

from __future__ import annotations

import random
from datetime import timedelta


def backoff(attempts: int, cap: timedelta) -> timedelta:
    """Exponential with jitter: about 1m, 2m, 4m ... up to `cap`.

    The jitter (±20%) spreads retries that failed together (a server that was down), so they do
    not all come back in the same second."""
    base = min(60 * 2 ** max(attempts - 1, 0), cap.total_seconds())
    return timedelta(seconds=base * random.uniform(0.8, 1.2))
