"""After a crash: messages a dead process had reserved go back to the queue; the one it was
sending is marked `unknown` (it may have been accepted) and waits for an operator's call.
Whether the process that reserved a message is dead is store.leases' call.

A live process strands messages too, when the database goes away between the claim and the
outcome (a restart of PostgreSQL): its delivery run fails, and the rows stay reserved by a worker
that is alive. So each process keeps the ids it is working on in hand (hold, let_go); a row reserved by this
process and not in hand was left by one of its own failed runs, and is settled like a dead one's.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from playbookd.store import audit
from playbookd.store.database import aware, transaction, utcnow
from playbookd.store.leases import WORKER, alive
from playbookd.store.schema import outbox

log = logging.getLogger("playbookd.delivery")
_in_hand: set[int] = set()  # outbox ids this process's delivery runs are working on
_lock = threading.Lock()


def hold(ids: list[int]) -> None:
    """Mark `ids` as being worked on by this process, until let_go."""
    with _lock:
        _in_hand.update(ids)


def let_go(ids: list[int]) -> None:
    with _lock:
        _in_hand.difference_update(ids)


def _abandoned(conn: Connection, now: datetime) -> list[Any]:
    rows = conn.execute(select(outbox.c.id, outbox.c.state, outbox.c.claimed_by, outbox.c.sent_at,
                               outbox.c.account_id, outbox.c.playbook_id, outbox.c.to_addr)
                        .where(outbox.c.state.in_(["claimed", "sending"])))
    with _lock:
        held = set(_in_hand)
    return [r for r in rows if (r.claimed_by == WORKER and r.id not in held)
            or not alive(r.claimed_by, aware(r.sent_at), now)]


def recover(engine: Engine, now: datetime | None = None) -> int:
    """Settle what dead workers left behind; returns how many messages became `unknown`."""
    now = now or utcnow()
    unknown = 0
    with transaction(engine) as conn:
        for row in _abandoned(conn, now):
            if row.state == "claimed":
                conn.execute(update(outbox).where(outbox.c.id == row.id, outbox.c.state == "claimed")
                             .values(state="queued", claimed_by=None, sent_at=None))
                continue
            conn.execute(update(outbox).where(outbox.c.id == row.id, outbox.c.state == "sending").values(
                state="unknown", last_error="interrupted during delivery; may or may not have been sent"))
            audit.record(conn, audit.UNKNOWN, account_id=row.account_id, playbook_id=row.playbook_id,
                         contact=row.to_addr, reason="interrupted_in_flight", at=now)
            unknown += 1
    return unknown


def unclaim(engine: Engine, ids: list[int]) -> None:
    """Messages this process claimed and never started go back to the queue (a delivery run stopped
    before every connection took its batch). With the store gone they stay claimed by this process and
    not in hand, which the next run's recover() requeues."""
    if not ids:
        return
    try:
        with transaction(engine) as conn:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids), outbox.c.state == "claimed",
                                              outbox.c.claimed_by == WORKER)
                         .values(state="queued", claimed_by=None, sent_at=None))
    except SQLAlchemyError as exc:  # the run's own failure, if any, is the one to report
        log.warning("could not hand %d claimed message(s) back to the queue now: %s", len(ids), exc)
