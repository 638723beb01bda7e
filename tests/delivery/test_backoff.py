"""One retry schedule for email and webhooks: doubling, jittered, capped."""

from __future__ import annotations

from datetime import timedelta

import pytest

from playbookd.delivery.backoff import backoff

CAP = timedelta(hours=1)


@pytest.mark.parametrize(("attempts", "base"), [(0, 60), (1, 60), (2, 120), (3, 240), (6, 1920)])
def test_each_attempt_doubles_the_wait_within_the_jitter(attempts: int, base: int) -> None:
    waits = [backoff(attempts, CAP).total_seconds() for _ in range(200)]
    assert all(0.8 * base <= w <= 1.2 * base for w in waits)
    assert len(set(waits)) > 1  # jittered, so retries that failed together spread out


def test_the_wait_never_grows_past_the_cap_plus_jitter() -> None:
    waits = [backoff(40, CAP) for _ in range(200)]
    assert all(0.8 * CAP <= w <= 1.2 * CAP for w in waits)
