"""Retention: old rendered bodies and old audit entries leave the store, in small transactions, so the
store does not grow without bound and no other writer (the delivery thread, a replica) waits long."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Engine

from playbookd.store.database import transaction
from playbookd.store.schema import audit, outbox

# Messages nobody sends again. `unknown` and `failed` wait for an operator's resend, so keep their body.
FINISHED = ("sent", "skipped", "dropped")
DROPPED_NOTE = "body dropped after retention.bodies"


@dataclass
class Purged:
    bodies: int = 0
    audit: int = 0

    def line(self) -> str:
        return f"retention: dropped {self.bodies} message body(ies), deleted {self.audit} audit entry(ies)"


def body_dropped(html: str, text: str) -> bool:
    """Every rendered email has a text part (at least the postal address), so an empty pair means the
    body was dropped by retention (or erased by `forget`), never an email that was sent empty."""
    return not html and not text


def drop_bodies(engine: Engine, before: datetime, batch: int, stop: threading.Event | None = None) -> int:
    """Erase the bodies of finished messages last touched before `before`, `batch` rows per transaction."""
    done, last = 0, 0
    old = or_(outbox.c.sent_at < before, (outbox.c.sent_at.is_(None)) & (outbox.c.created_at < before))
    while True:
        with transaction(engine) as conn:
            ids = list(conn.execute(
                select(outbox.c.id).where(outbox.c.id > last, outbox.c.state.in_(FINISHED), old,
                                          or_(outbox.c.html != "", outbox.c.text != ""))
                .order_by(outbox.c.id).limit(batch)).scalars())
            if ids:
                conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(html="", text=""))
        done += len(ids)
        if len(ids) < batch or (stop is not None and stop.is_set()):  # the rest waits for the next turn
            return done
        last = ids[-1]


def purge_audit(engine: Engine, before: datetime, batch: int, stop: threading.Event | None = None) -> int:
    """Delete audit entries older than `before`; walking the primary key keeps each batch cheap, as
    entries are written roughly in time order."""
    done, last = 0, 0
    while True:
        with transaction(engine) as conn:
            ids = list(conn.execute(select(audit.c.id).where(audit.c.id > last, audit.c.at < before)
                                    .order_by(audit.c.id).limit(batch)).scalars())
            if ids:
                conn.execute(delete(audit).where(audit.c.id.in_(ids)))
        done += len(ids)
        if len(ids) < batch or (stop is not None and stop.is_set()):  # the rest waits for the next turn
            return done
        last = ids[-1]


def apply(engine: Engine, now: datetime, bodies: timedelta, audit_for: timedelta, batch: int,
          stop: threading.Event | None = None) -> Purged:
    return Purged(drop_bodies(engine, now - bodies, batch, stop), purge_audit(engine, now - audit_for, batch, stop))
