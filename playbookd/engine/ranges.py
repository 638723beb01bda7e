"""Evaluation split into account ranges, so several replicas share one evaluation.

The leader (see service.leadership) plans an evaluation as a set of account-id ranges in the
`ranges` table; every replica claims them with FOR UPDATE SKIP LOCKED and evaluates. A range
held by a process that died goes back to the queue. On SQLite there is one process, which
works through its own ranges.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import Engine

from playbookd.engine import enroll, launch
from playbookd.engine import scope as S
from playbookd.engine.exits import exit_matching
from playbookd.engine.goals import measure
from playbookd.runtime import Runtime
from playbookd.store.database import aware, transaction, utcnow
from playbookd.store.leases import WORKER, alive
from playbookd.store.schema import accounts, ranges
from playbookd.workers import Interrupted

log = logging.getLogger("playbookd.cluster")
KEEP_DONE = timedelta(days=1)


def _bounds(conn: Connection, size: int) -> list[str]:
    """Every `size`-th account id, read with keyset steps so no id list is held in memory."""
    found: list[str] = []
    while True:
        query = select(accounts.c.id).order_by(accounts.c.id).offset(size).limit(1)
        if found:
            query = query.where(accounts.c.id >= found[-1])
        next_id = conn.execute(query).scalar()
        if next_id is None:
            return found
        found.append(next_id)


def plan(engine: Engine, now: datetime, size: int, runtime: Runtime | None = None) -> int:
    """Queue one evaluation at `now` as ranges; returns how many. With `runtime`, the calendar
    occurrences due at `now` are opened in the same transaction: they run in these ranges or not at all;
    and the ranges look at every account or only at those changed or due (engine.scope), decided here
    once for all of them. Without `runtime`, every account."""
    with transaction(engine) as conn:
        why: str | None = "planned without a runtime"
        if runtime is not None:
            enroll.open_occurrences(runtime, conn, now)
            why = S.wants_full(runtime, conn, now)
            if why is not None:
                log.info("full evaluation: %s", why, extra={"reason": why})
                S.record_full(runtime, conn, now)  # the ranges are queued with it: they will be done
        conn.execute(delete(ranges).where(ranges.c.state == "done", ranges.c.run_at < now - KEEP_DONE))
        cuts: list[str | None] = [None, *_bounds(conn, size), None]
        conn.execute(insert(ranges), [{"run_at": now, "lo": lo, "hi": hi, "state": "queued", "full": why is not None}
                                      for lo, hi in itertools.pairwise(cuts)])
    return len(cuts) - 1


def _claim(engine: Engine) -> Any:
    with transaction(engine) as conn:
        query = select(ranges).where(ranges.c.state == "queued").order_by(ranges.c.id).limit(1)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = conn.execute(query).first()
        if row is not None:
            conn.execute(update(ranges).where(ranges.c.id == row.id)
                         .values(state="running", claimed_by=WORKER, claimed_at=utcnow()))
        return row


def _requeue_abandoned(engine: Engine) -> None:
    now = utcnow()
    with transaction(engine) as conn:
        running = conn.execute(select(ranges.c.id, ranges.c.claimed_by, ranges.c.claimed_at)
                               .where(ranges.c.state == "running")).all()
        dead = [r.id for r in running if not alive(r.claimed_by, aware(r.claimed_at), now)]
        if dead:
            conn.execute(update(ranges).where(ranges.c.id.in_(dead), ranges.c.state == "running")
                         .values(state="queued", claimed_by=None, claimed_at=None))


def _hand_back(engine: Engine, range_id: int) -> None:
    """A stop in the middle of a range: queue it again for whoever evaluates next."""
    with transaction(engine) as conn:
        conn.execute(update(ranges).where(ranges.c.id == range_id, ranges.c.state == "running")
                     .values(state="queued", claimed_by=None, claimed_at=None))


def work(runtime: Runtime, engine: Engine, stop: Any = None) -> int:
    """Evaluate queued ranges until none is left; returns how many this process did."""
    _requeue_abandoned(engine)
    done = 0
    while not (stop is not None and stop.is_set()):
        row = _claim(engine)
        if row is None:
            return done
        run_at = aware(row.run_at)
        assert run_at is not None
        try:
            part = (row.lo, row.hi)
            scope = S.scope(runtime, engine, run_at, bool(row.full), runtime.playbooks, part)
            measure(runtime, engine, run_at, part, scope)
            exit_matching(runtime, engine, run_at, part, scope)
            enrolled = enroll.evaluate_range(runtime, engine, run_at, part, scope=scope)
        except Interrupted:
            _hand_back(engine, row.id)
            raise
        with transaction(engine) as conn:
            conn.execute(update(ranges).where(ranges.c.id == row.id).values(state="done", enrolled=enrolled))
        if _complete(engine, run_at):
            launch.admit(runtime, engine, run_at, sweep=True)
        done += 1
    return done


def _complete(engine: Engine, run_at: datetime) -> bool:
    """Every range of the evaluation at `run_at` is done: its waiting lists are final. Two replicas
    finishing the last ranges together may both see it; admitting twice lets in no one more."""
    with engine.connect() as conn:
        return conn.execute(select(ranges.c.id).where(ranges.c.run_at == run_at, ranges.c.state != "done")
                            .limit(1)).first() is None
