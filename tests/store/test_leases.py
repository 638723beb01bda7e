"""Whether the process that reserved work still holds it, on this host and beyond."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from playbookd.store.leases import HOST, LEASE, WORKER, alive

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_this_process_holds_what_it_reserved() -> None:
    assert WORKER.startswith(f"{HOST}:{os.getpid()}:") and alive(WORKER, NOW, NOW)


def test_a_dead_process_holds_nothing() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    assert not alive(f"{HOST}:{child.stdout.strip()}:123", NOW, NOW)
    assert not alive(f"{HOST}:{child.stdout.strip()}", NOW, NOW)  # the format of earlier versions


def test_a_reused_pid_does_not_keep_a_dead_holders_claim() -> None:
    # our own pid, but the holder started at another time: it was an earlier process with this pid
    assert not alive(f"{HOST}:{os.getpid()}:1", NOW, NOW)


def test_another_host_holds_its_claim_for_the_lease() -> None:
    assert alive("elsewhere:42:99", NOW - LEASE + timedelta(seconds=1), NOW)
    assert not alive("elsewhere:42:99", NOW - LEASE, NOW)
