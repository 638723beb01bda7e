"""Work reserved by a process (an outbox message, an account range), and whether it still holds it.

A reservation names its worker as host:pid. A worker on this host is dead when its pid is;
a worker on another host (a replica) is taken for dead once its reservation is older than
LEASE, far longer than one SMTP transaction or one range evaluation may take.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"
LEASE = timedelta(minutes=15)


def alive(worker: str | None, since: datetime | None, now: datetime) -> bool:
    host, _, pid = (worker or "").rpartition(":")
    if host == HOST and pid.isdigit():
        if int(pid) == os.getpid():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return since is not None and now - since < LEASE
