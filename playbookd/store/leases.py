"""Work reserved by a process (an outbox message, an account range), and whether it still holds it.

A reservation names its worker as host:pid:start. A worker on this host is dead when its pid is,
or when the pid now belongs to a process that started at another time (the pid was reused);
a worker on another host (a replica) is taken for dead once its reservation is older than
LEASE, far longer than one SMTP transaction or one range evaluation may take.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

HOST = socket.gethostname()
LEASE = timedelta(minutes=15)


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), None where that is unknown:
    with the pid it names one process, even after the pid is reused by another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


WORKER = f"{HOST}:{os.getpid()}:{_started(os.getpid()) or 0}"


def _parse(worker: str) -> tuple[str, str, str | None]:
    """host:pid:start (host:pid from earlier versions)."""
    parts = worker.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], None if parts[2] == "0" else parts[2]
    host, _, pid = worker.rpartition(":")
    return host, pid, None


def _running(pid: int, started: str | None) -> bool:
    now_started = _started(pid)
    if now_started is not None:
        return started is None or now_started == started  # the same pid, but another process: the holder is dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(worker: str | None, since: datetime | None, now: datetime) -> bool:
    host, pid, started = _parse(worker or "")
    if host == HOST and pid.isdigit():
        return _running(int(pid), started)
    return since is not None and now - since < LEASE
