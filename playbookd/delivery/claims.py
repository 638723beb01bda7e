"""Which due messages go out now: the queue read once per round, the send-time checks (exits,
suppressions, departed contacts, the frequency cap), and the `claimed` and `sending` marks.

Each runs inside a transaction its caller holds, so a delivery lane settles one batch and starts the
next in one commit. A row `claimed` has certainly not gone out; one `sending` may have.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, select, update
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from playbookd.delivery import holds
from playbookd.delivery.recipients import suppressed_for
from playbookd.model.account import decode_account
from playbookd.model.conditions import uses_contacts
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store import health as history
from playbookd.store.accounts import RECORD, among, load_account_types
from playbookd.store.leases import WORKER
from playbookd.store.people import attach_contacts
from playbookd.store.schema import accounts, contacts, enrollments, outbox

log = logging.getLogger("playbookd.delivery")


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0
    held: int = 0  # put back in the queue when the circuit opened
    paused: str | None = None  # why delivery stopped with mail still due: the circuit is open
    errors: list[str] = field(default_factory=list)
    send_seconds: list[float] = field(default_factory=list)  # a sending process's send times, for the daemon's metrics

    def line(self) -> str:
        return (f"sent {self.sent}, deferred {self.deferred}, retrying {self.retried}, skipped {self.skipped}, "
                f"failed {self.failed}, unknown {self.unknown}"
                + (f", held {self.held}" if self.held else "") + (f"; {self.paused}" if self.paused else ""))


def _due(conn: Connection, now: datetime, limit: int, held: Sequence[str] = ()) -> list[Row[Any]]:
    """Queued mail due now, but for that of paused (or draft) playbooks `held`: it stays queued."""
    query = (select(outbox, contacts.c.timezone, contacts.c.status.label("contact_status"),
                    enrollments.c.state.label("enrollment_state"))
             .join(contacts, contacts.c.id == outbox.c.contact_id, isouter=True)
             .join(enrollments, enrollments.c.id == outbox.c.enrollment_id, isouter=True)
             .where(outbox.c.state == "queued", _due_by(conn, now), outbox.c.playbook_id.not_in(held))
             .order_by(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=outbox)
    return list(conn.execute(query))


def _due_by(conn: Connection, now: datetime) -> ColumnElement[bool]:
    """`not_before <= now`. On SQLite as `+not_before`, the same value hidden from the planner: without
    ANALYZE statistics it takes ix_outbox_due's range on not_before and sorts every due message each round,
    where ix_outbox_claim gives the claim's order and the round stops at its limit."""
    if conn.dialect.name != "sqlite":
        return outbox.c.not_before <= now
    return UnaryExpression(outbox.c.not_before, operator=custom_op("+"), type_=outbox.c.not_before.type) <= now


def _exiting(runtime: Runtime, conn: Connection, rows: list[Row[Any]], now: datetime) -> set[str]:
    """Accounts of `rows` that match config.yaml's exit_when now: a churned account gets nothing
    more from the moment a sync says so, even before the next evaluation ends its enrollments."""
    if runtime.exit_when is None or not rows:
        return set()
    types = load_account_types(conn)
    ids = list({row.account_id for row in rows})
    records = [decode_account(r.id, r.segment, r.data, r.changes, types)
               for r in conn.execute(select(*RECORD).where(among(conn, accounts.c.id, ids)))]
    history.attach(conn, records, runtime.history_from(now))  # one query for the batch, not one per account
    if uses_contacts(runtime.exit_when):
        attach_contacts(conn, records)
    return {record["id"] for record in records if runtime.leaves_everything(record, now)}


def _suppressed(conn: Connection, rows: list[Row[Any]]) -> dict[tuple[str, str], str]:
    """(address, category) -> reason for the claimed rows: one lookup per category, not per message."""
    found: dict[tuple[str, str], str] = {}
    for category in {row.category for row in rows}:
        addresses = {row.to_addr for row in rows if row.category == category}
        found.update(((email, category), reason)
                     for email, reason in suppressed_for(conn, addresses, category).items())
    return found


def _skip_reason(row: Row[Any], exiting: set[str], suppressed: dict[tuple[str, str], str]) -> str | None:
    if row.enrollment_state == "exited":
        return "enrollment_exited"
    if row.account_id in exiting:
        return "account_exited"
    if row.contact_status is not None and row.contact_status != "active":
        return "departed" if row.contact_status == "left" else f"contact_{row.contact_status}"
    return suppressed.get((row.to_addr, row.category))


def mark(conn: Connection, row: Row[Any], values: dict[str, Any]) -> None:
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))


def note(conn: Connection, row: Row[Any], event: str, reason: str | None, now: datetime, **detail: Any) -> None:
    audit.record(conn, event, account_id=row.account_id, playbook_id=row.playbook_id,
                 enrollment_id=row.enrollment_id, contact=row.to_addr, reason=reason, at=now,
                 detail={"outbox_id": row.id, "message_id": row.message_id, **detail})
    if event in (audit.FAILED, audit.UNKNOWN):  # each needs a person's eye: the log says so, in full
        log.warning("message %s to %s %s (%s): %s", row.id, row.to_addr, event, reason, detail.get("error"),
                    extra={"account": row.account_id, "playbook": row.playbook_id})


def _gate(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime, report: DeliveryReport,
          exiting: set[str], suppressed: dict[tuple[str, str], str]) -> bool:
    """Decide, inside the claiming transaction, whether `row` goes out now."""
    hold = None
    reason = _skip_reason(row, exiting, suppressed)
    if reason is None:
        hold = holds.hold(runtime, conn, row, now)
        reason = "frequency_cap_deadline" if hold is not None and holds.cap_expired(runtime, row, hold) else None
    if reason is not None:
        mark(conn, row, {"state": "skipped", "last_error": reason})
        note(conn, row, audit.STEP_SKIPPED, reason, now)
        report.skipped += 1
        return False
    if hold is not None:
        mark(conn, row, {"not_before": hold[1]})
        note(conn, row, audit.DEFERRED, hold[0], now, until=hold[1].isoformat())
        report.deferred += 1
        return False
    return True


def claim(runtime: Runtime, conn: Connection, now: datetime, report: DeliveryReport,
          limit: int) -> tuple[list[Row[Any]], bool]:
    """Read a round of due mail and claim what passes the checks; the rest is skipped or deferred."""
    rows = _due(conn, now, limit, launch.holding(runtime.playbooks, conn))
    if runtime.config.delivery.frequency_cap is not None:
        holds.lock_recipients(conn, rows)
    exiting, suppressed = _exiting(runtime, conn, rows, now), _suppressed(conn, rows)
    later = Counter(row.to_addr for row in rows)
    claimed, pending = [], []
    for row in rows:
        later[row.to_addr] -= 1
        if _gate(runtime, conn, row, now, report, exiting, suppressed):
            claimed.append(row)
            # the frequency cap counts claimed rows: one to an address that comes again in this batch
            # is marked before that one is checked, the others together below
            if later[row.to_addr]:
                _claimed(conn, [row], now)
            else:
                pending.append(row)
    _claimed(conn, pending, now)
    return claimed, bool(rows)


def _claimed(conn: Connection, rows: list[Row[Any]], now: datetime) -> None:
    if rows:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]))
                     .values(state="claimed", claimed_by=WORKER, sent_at=now))


def start(conn: Connection, rows: list[Row[Any]], now: datetime) -> list[Row[Any]]:
    """Claimed becomes sending for a connection's whole batch, in the commit just before its attempts:
    after a crash, `sending` means "may have gone out" and `claimed` means "certainly did not"."""
    ids = [r.id for r in rows]
    mine = (outbox.c.id.in_(ids), outbox.c.claimed_by == WORKER)
    changed = conn.execute(update(outbox).where(*mine, outbox.c.state == "claimed")
                           .values(state="sending", sent_at=now, attempts=outbox.c.attempts + 1)).rowcount
    if changed == len(ids):
        return rows
    # rare: some were settled meanwhile (a recovery that judged this process dead); only ours go
    started = set(conn.execute(select(outbox.c.id).where(*mine, outbox.c.state == "sending")).scalars())
    return [row for row in rows if row.id in started]
