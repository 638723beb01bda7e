"""Rules-engine batches in worker processes, each under `limits.evaluate_batch_seconds`.

A batch that crashes its worker (the engine's C code has segfaulted on some inputs) or runs
past the limit is split in two and each half is run again, down to the one account behind it,
which is reported as failed; every other account is evaluated. Each worker holds one batch at
a time, so a batch's time is its own, never the time it queued behind another. The price of
isolating an account that hangs is one limit per halving (about ten for a batch of 500).
Results come back in the order the batches went in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from playbookd import workers
from playbookd.model.account import AccountRecord
from playbookd.workers import Call, Reply, TimedOut, Worker

Failure = tuple[str, str]
Outcome = tuple[list[Any], list[Failure]]


@dataclass
class _Batch:
    seq: int  # the batch as it came in; its halves keep it
    records: list[AccountRecord]


@dataclass
class _Open:
    """A batch that came in and is not complete yet: how many of its parts are still out."""

    parts: int = 1
    matches: list[Any] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _account(batch: _Batch) -> str:
    return str(batch.records[0].get("id"))


class BatchPool:
    """Up to `size` workers, each started when a batch waits and no worker is free: a stream of one
    batch starts one process, an empty one none (a spawn is a fresh interpreter and a compile)."""

    def __init__(self, size: int, initializer: Callable[..., Any], initargs: Sequence[Any],
                 work: Callable[[list[AccountRecord], datetime], Outcome], seconds: float) -> None:
        self.initializer, self.initargs = initializer, tuple(initargs)
        self.work = work
        self.seconds = seconds
        self.size = size
        self.workers: list[Worker] = []

    def _spawn(self) -> Worker:
        worker = Worker(self.initializer, self.initargs, name="playbookd-rules")
        self.workers.append(worker)
        return worker

    def _free(self) -> Worker | None:
        """A worker with no call in flight, started now if none is and there is room for one."""
        idle = next((w for w in self.workers if w.call is None), None)
        return idle if idle is not None or len(self.workers) >= self.size else self._spawn()

    def idle(self) -> bool:
        """Every worker alive and between calls: the pool can serve another stream as it is."""
        return all(w.call is None and not w.dead and w.process.is_alive() for w in self.workers)

    def shrink(self, size: int) -> None:
        """At most `size` workers from now on; those beyond it stop."""
        self.size = size
        for worker in self.workers[size:]:
            worker.kill()
        self.workers = self.workers[:size]

    def run(self, chunks: Iterator[list[AccountRecord]], now: datetime) -> Iterator[Outcome]:
        waiting: deque[_Batch] = deque()  # halves of a batch that failed, run before new ones
        open_: dict[int, _Open] = {}
        taken = done = 0
        exhausted = False
        while True:
            while waiting or (not exhausted and len(open_) < 2 * self.size):
                if not waiting:
                    chunk = next(chunks, None)
                    exhausted = chunk is None
                    if chunk is None:
                        break
                    waiting.append(_Batch(taken, chunk))
                    open_[taken] = _Open()
                    taken += 1
                worker = self._free()
                if worker is None:
                    break
                batch = waiting.popleft()
                worker.submit(Call(self.work, (batch.records, now), self.seconds,
                                   f"a rules-engine batch of {len(batch.records)} account(s)", tag=batch))
            if done in open_ and open_[done].parts == 0:
                finished = open_.pop(done)
                done += 1
                yield finished.matches, finished.failures
                continue  # a slot is free: the next batch goes out before anything else
            if not open_ and exhausted:
                return
            for reply in workers.settle(self.workers):
                self._settle(reply, waiting, open_)

    def _settle(self, reply: Reply, waiting: deque[_Batch], open_: dict[int, _Open]) -> None:
        batch: _Batch = reply.call.tag
        entry = open_[batch.seq]
        entry.parts -= 1
        if reply.error is None:
            matches, failures = reply.value
            entry.matches.extend(matches)
            entry.failures.extend(failures)
            return
        self._replace_dead()
        if len(batch.records) == 1:
            entry.failures.append((_account(batch), self._why(reply)))
            return
        half = len(batch.records) // 2
        entry.parts += 2
        waiting.extendleft([_Batch(batch.seq, batch.records[half:]), _Batch(batch.seq, batch.records[:half])])

    def _why(self, reply: Reply) -> str:
        if isinstance(reply.error, TimedOut):
            return (f"the rules engine took longer than limits.evaluate_batch_seconds ({self.seconds:g} s) "
                    "on this account and was stopped")
        return f"the rules engine crashed on this account ({reply.error})"

    def _replace_dead(self) -> None:
        # a dead worker is dropped; another starts when a batch needs it
        self.workers = [worker for worker in self.workers if not worker.dead]

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers = []
