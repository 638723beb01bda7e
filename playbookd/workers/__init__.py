"""Worker processes that bound work in time and memory and never outlive the daemon.

Why processes: a render or a rules-engine batch that runs away (a nested loop driven by a
synced number, a C call allocating a gigabyte) cannot be stopped from another thread in
CPython: threads cannot be killed, and a signal reaches only the main thread, and only
between bytecodes. A child process can be killed at its deadline and replaced, and RLIMIT_AS
turns its runaway allocation into a MemoryError there rather than the daemon's OOM kill. The
price is a pipe round trip per call: bench/bench_render.py measures it.

Each child dies with its parent: PR_SET_PDEATHSIG (SIGKILL on the parent's exit, kill -9
included) and a thread that watches getppid() for what the signal cannot cover (the parent
gone before prctl ran, or the spawning thread rather than the process exiting). It ignores
SIGINT, which a Ctrl-C sends to the whole process group: the parent decides. It sends
("ready", t) once initialised and (kind, t, value) after each call, `t` being its
CLOCK_MONOTONIC, which on Linux is the parent's clock too: so the parent knows when a call
really started, however late it reads the reply.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from playbookd.errors import PlaybookdError
from playbookd.workers.child import serve

SPAWN_SECONDS = 120.0  # a child that is not ready by then (a machine swapping hard) is replaced
POLL_SECONDS = 0.5  # how often a waiting parent looks at the stop flag besides its deadlines


class Interrupted(PlaybookdError):
    """The process is stopping: the call was abandoned, not failed, and runs again on the next start."""


class LimitExceeded(PlaybookdError):
    """A call took longer or more memory than its limit; the child was killed or recovered."""


class TimedOut(LimitExceeded):
    pass


class OutOfMemory(LimitExceeded):
    pass


class WorkerDied(PlaybookdError):
    """The child exited without answering (a crash in C code, a kill from outside)."""


class WorkerFailed(PlaybookdError):
    """The call raised an exception nobody expected; the message has the child's traceback."""


# ---- the parent --------------------------------------------------------------------------------

@dataclass
class Call:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    seconds: float
    label: str
    sent_at: float = field(default_factory=time.monotonic)
    tag: Any = None  # the caller's own reference (a batch)


@dataclass
class Reply:
    call: Call
    value: Any = None
    error: PlaybookdError | None = None


_lock = threading.Lock()
_live: set[Worker] = set()  # the interruptible ones
_children: set[Worker] = set()  # every worker not yet killed
_stopping = False


def _kill_children() -> None:
    """At exit, before multiprocessing's own handler, which SIGTERMs daemonic children and joins them
    without a timeout: a child that traps SIGTERM (a sender, its owner's close skipped) would hang the exit."""
    with _lock:
        children = list(_children)
    for worker in children:
        worker.terminate()


multiprocessing.util.Finalize(None, _kill_children, exitpriority=100)


def interrupt_all() -> None:
    """Stop every call in flight now and refuse new ones: the process is exiting."""
    global _stopping
    with _lock:
        _stopping = True
        live = list(_live)
    for worker in live:
        worker.terminate()


def resume() -> None:
    """Accept calls again after interrupt_all (a process that carries on, such as a test)."""
    global _stopping
    with _lock:
        _stopping = False


def stopping() -> bool:
    return _stopping


def overdue(grace: float) -> list[str]:
    """Calls past their deadline by more than `grace`: whoever waits on them is no longer enforcing it."""
    now = time.monotonic()
    with _lock:
        live = list(_live)
    late = []
    for worker in live:
        deadline, call = worker.deadline(), worker.call
        if call is not None and deadline is not None and now > deadline + grace:
            late.append(f"{call.label}: {now - deadline:.0f} s past its limit of {call.seconds:g} s")
    return late


_main_swap = threading.Lock()


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Spawn prepares a child by running the parent's main script again, as `__mp_main__`: under the
    `playbookd` console script (or `python -m playbookd`) that imports the whole CLI, over a second of
    CPU per child, while a child needs only its target's module. The script is hidden for the moment
    the child's start-up data is taken; the lock keeps two threads from swapping it at once. So what
    a child is given to call lives in a module, not in the main script."""
    with _main_swap:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


class Worker:
    """One child process, one call at a time; the parent enforces each call's time limit."""

    def __init__(self, initializer: Callable[..., Any] | None = None, initargs: Sequence[Any] = (),
                 memory_mb: int | None = None, name: str = "playbookd-worker", interruptible: bool = True) -> None:
        """`interruptible=False`: interrupt_all leaves this child alone, its owner stops it (a sender
        that drains its batch on a stop rather than dying mid-transaction)."""
        if _stopping:
            raise Interrupted("stopping: no new work is started")
        context = multiprocessing.get_context("spawn")  # a fork would copy the daemon's threads and handles
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, name=name, daemon=True,
                                       args=(child, os.getpid(), initializer, tuple(initargs), memory_mb))
        with _bare_main():
            self.process.start()
        child.close()
        self.memory_mb = memory_mb
        self.spawned_at = time.monotonic()
        self.free_at: float | None = None  # when the child was ready, or last answered
        self.call: Call | None = None
        self.dead = False
        with _lock:
            _children.add(self)
            if interruptible:
                _live.add(self)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def submit(self, call: Call) -> None:
        assert self.call is None and not self.dead, "one call at a time, to a live worker"
        call.sent_at = time.monotonic()
        self.call = call
        try:
            self.conn.send((call.func, call.args))
        except (OSError, ValueError):
            self.dead = True  # its reply is then the death, reported by receive()
        except BaseException:  # the call could not be sent (it does not pickle): no call is in flight
            self.call = None
            self.kill()
            raise

    def deadline(self) -> float | None:
        """When the call in flight (or the start, before the child is ready) runs out of time."""
        if self.free_at is None:
            return self.spawned_at + SPAWN_SECONDS
        if self.call is None:
            return None
        return max(self.call.sent_at, self.free_at) + self.call.seconds

    def receive(self, ready: bool = False) -> Reply | None:
        """Read what the child sent, if anything (`ready`: a wait said there is); a Reply when it
        settles the call in flight."""
        if self.dead:
            return self._lost("the worker process died")
        try:
            if not ready and not self.conn.poll():
                return None
            kind, at, value = self.conn.recv()
        except (EOFError, OSError):
            return self._lost(f"the worker process died (exit code {self._exit_code()})")
        if self.free_at is None and kind == "error":
            self.kill()
            raise WorkerDied(f"the worker process could not start: {value}")
        self.free_at = at
        if kind == "ready":
            return None
        call, self.call = self.call, None
        assert call is not None, f"a reply ({kind}) to no call"
        if kind == "ok":
            return Reply(call, value)
        if kind == "memory":
            return Reply(call, error=OutOfMemory(f"{call.label}: took more than {self.memory_mb} MB"))
        return Reply(call, error=WorkerFailed(f"{call.label}: {value}"))

    def expire(self, now: float) -> Reply | None:
        """Kill the child when its call (or its start) is past the deadline."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        if self.free_at is None:
            return self._lost(f"the worker process did not start within {SPAWN_SECONDS:g} s")
        self.kill()
        call, self.call = self.call, None
        assert call is not None
        return Reply(call, error=TimedOut(f"{call.label}: took longer than {call.seconds:g} s"))

    def _lost(self, why: str) -> Reply | None:
        """The child is gone: the call in flight gets the blame, unless the child never got to it."""
        self.kill()
        if _stopping:
            raise Interrupted("stopping: the call was abandoned")
        if self.free_at is None:  # it died starting up: no call's fault, and retrying would not help
            raise WorkerDied(why + " while starting")
        call, self.call = self.call, None
        return None if call is None else Reply(call, error=WorkerDied(why))

    def _exit_code(self) -> int | None:
        self.process.join(1)
        return self.process.exitcode

    def terminate(self) -> None:
        """SIGKILL the child, from any thread; the thread waiting on it sees the pipe close and cleans up."""
        if self.process.pid is not None and self.process.exitcode is None:  # never a reaped (reusable) pid
            with contextlib.suppress(OSError):
                os.kill(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """Terminate and reap the child and close the pipe: by the thread that uses this worker."""
        self.dead = True
        with _lock:
            _live.discard(self)
            _children.discard(self)
        if self.process.pid is not None and self.process.exitcode is None:
            self.terminate()
            self.process.join(5)
        with contextlib.suppress(OSError):
            self.conn.close()


def settle(workers: Iterable[Worker], timeout: float = POLL_SECONDS) -> list[Reply]:
    """Wait until a busy worker answers, dies or runs out of time (at most `timeout`); what settled."""
    busy = [w for w in workers if w.call is not None or w.free_at is None]
    if _stopping:
        for worker in busy:
            worker.kill()
        raise Interrupted("stopping: the call was abandoned")
    now = time.monotonic()
    deadlines = [d for d in (w.deadline() for w in busy) if d is not None]
    until = min([now + timeout, *deadlines])
    ready = wait([w.conn for w in busy if not w.dead], max(until - now, 0)) if busy else []
    replies = []
    for worker in busy:
        reply = worker.receive(ready=True) if worker.dead or worker.conn in ready else None
        reply = reply or worker.expire(time.monotonic())
        if reply is not None:
            replies.append(reply)
    if _stopping:
        raise Interrupted("stopping: the call was abandoned")
    return replies


def run(worker: Worker, call: Call) -> Any:
    """One call on `worker`, waited for; raises what settled it if it did not succeed."""
    worker.submit(call)
    while True:
        for reply in settle([worker]):
            if reply.error is not None:
                raise reply.error
            return reply.value


class Pool:
    """Idle workers kept warm between calls (a spawn costs a fresh interpreter), any thread may call."""

    def __init__(self, initializer: Callable[..., Any] | None = None, keep: int = 4,
                 name: str = "playbookd-worker") -> None:
        self.initializer = initializer
        self.keep = keep
        self.name = name
        self._idle: list[Worker] = []
        self._lock = threading.Lock()

    def call(self, call: Call, memory_mb: int | None = None) -> Any:
        worker = self._take(memory_mb)
        try:
            return run(worker, call)
        finally:
            self._give(worker)

    def _take(self, memory_mb: int | None) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.memory_mb == memory_mb and worker.process.is_alive():
                    return worker
                worker.kill()
        return Worker(self.initializer, (), memory_mb, self.name)

    def _give(self, worker: Worker) -> None:
        if worker.dead or worker.call is not None:
            worker.kill()
            return
        with self._lock:
            if len(self._idle) < self.keep and not _stopping:
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()
