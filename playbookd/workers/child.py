"""The child's side of a worker: dies with its parent, ignores Ctrl-C, caps its own memory once
initialised, then answers calls over its pipe until the pipe closes. Kept apart from the parent's
side so that a spawned child imports only this and what its initializer needs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
FIRST_GENERATION = 10_000  # new objects between two passes of the cyclic collector (Python's default: 700)


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(70)

    if os.getppid() != parent:
        os._exit(70)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _cap_memory(megabytes: int) -> None:
    """What the child holds once initialised, plus `megabytes` for the calls."""
    import resource  # Unix only, like the rest of this module's guarantees

    limit = _address_space() + megabytes * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _collect_less() -> None:
    """A call makes many short-lived objects (an email's context, a batch's facts), which set off
    the cyclic collector's passes, and each full pass went over everything the initializer built
    (modules, compiled templates, rulesets), which lives as long as the child: that is frozen out of
    the passes, and a pass comes after FIRST_GENERATION new objects. 3% of a render worker's
    instructions per email (callgrind); garbage cycles are still collected, a little later."""
    gc.freeze()
    gc.set_threshold(FIRST_GENERATION, *gc.get_threshold()[1:])


def serve(conn: Connection, parent: int, initializer: Callable[..., Any] | None, initargs: Sequence[Any],
           memory_mb: int | None) -> None:
    _die_with_parent(parent)  # before anything slow: the parent may be killed while we import
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if initializer is not None:
            initializer(*initargs)
        _collect_less()
        if memory_mb:
            _cap_memory(memory_mb)
    except BaseException:
        conn.send(("error", time.monotonic(), traceback.format_exc()))
        return
    conn.send(("ready", time.monotonic(), None))
    while True:
        try:
            func, args = conn.recv()
            reply: tuple[str, Any] = ("ok", func(*args))
        except EOFError:
            return
        except MemoryError:
            reply = ("memory", None)
        except BaseException:
            reply = ("error", traceback.format_exc())
        try:
            conn.send((reply[0], time.monotonic(), reply[1]))
        except MemoryError:
            conn.send(("memory", time.monotonic(), None))
