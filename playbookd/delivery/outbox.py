"""Delivery: drain the outbox through a transport, honouring every send-time rule.

A row moves queued -> claimed -> sending -> sent | failed | unknown, or queued -> skipped. Each
connection marks its batch `sending` in one commit before the first SMTP transaction and commits
the outcomes together after the last, so after a crash a row still `sending` was possibly
delivered: it becomes `unknown` and is never resent without an operator. At most
`smtp.connections` x `smtp.batch` rows are `sending` at once per process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.engine import Engine

from playbookd.delivery import bounces, holds
from playbookd.delivery.backoff import backoff
from playbookd.delivery.circuit import Circuit
from playbookd.delivery.message import Outgoing, wire
from playbookd.delivery.pacing import Pacer
from playbookd.delivery.recipients import suppressed_for
from playbookd.delivery.recovery import in_hand, recover, unclaim
from playbookd.delivery.transports import PermanentFailure, TemporaryFailure, Transport, UncertainDelivery
from playbookd.model.account import decode_account
from playbookd.model.conditions import uses_contacts
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store import health as history
from playbookd.store.accounts import RECORD, among, load_account_types
from playbookd.store.database import aware, transaction, utcnow
from playbookd.store.leases import WORKER
from playbookd.store.people import attach_contacts
from playbookd.store.schema import accounts, contacts, enrollments, outbox
from playbookd.store.schema import bounces as bounce_counts

log = logging.getLogger("playbookd.delivery")
MAX_RETRY_DELAY = timedelta(hours=6)
POLICY_REFUSAL = "refused_by_policy"  # 5.7.x: our mail or setup, not the recipient; status raises it
CIRCUIT_OPEN = "circuit_open"  # held back: the server refuses every message for our setup (delivery/circuit)


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
             .where(outbox.c.state == "queued", outbox.c.not_before <= now, outbox.c.playbook_id.not_in(held))
             .order_by(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=outbox)
    return list(conn.execute(query))


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


def _mark(conn: Connection, row: Row[Any], values: dict[str, Any]) -> None:
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))


def _log(conn: Connection, row: Row[Any], event: str, reason: str | None, now: datetime, **detail: Any) -> None:
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
        _mark(conn, row, {"state": "skipped", "last_error": reason})
        _log(conn, row, audit.STEP_SKIPPED, reason, now)
        report.skipped += 1
        return False
    if hold is not None:
        _mark(conn, row, {"not_before": hold[1]})
        _log(conn, row, audit.DEFERRED, hold[0], now, until=hold[1].isoformat())
        report.deferred += 1
        return False
    return True


def _start(engine: Engine, rows: list[Row[Any]], now: datetime) -> list[Row[Any]]:
    """Claimed becomes sending in one commit for a connection's whole batch, just before its attempts:
    after a crash, `sending` means "may have gone out" and `claimed` means "certainly did not"."""
    with transaction(engine) as conn:
        ids = set(conn.execute(select(outbox.c.id).where(outbox.c.id.in_([r.id for r in rows]),
                                                         outbox.c.state == "claimed",
                                                         outbox.c.claimed_by == WORKER)).scalars())
        if ids:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids))
                         .values(state="sending", sent_at=now, attempts=outbox.c.attempts + 1))
    return [row for row in rows if row.id in ids]


def outgoing(runtime: Runtime, row: Row[Any]) -> Outgoing:
    headers = dict(row.headers)
    url = headers.pop("List-Unsubscribe-URL")
    delivery = runtime.config.delivery
    # a `from:` decided at queue time (a CSM) wins; "" for Reply-To means none (replies go to From)
    sender = headers.pop("From", None) or delivery.from_
    reply_to = headers.pop("Reply-To", delivery.reply_to) or None
    return Outgoing(row.message_id, sender, row.to_addr, row.subject, row.html, row.text, url, reply_to, headers)


def _settle(runtime: Runtime, conn: Connection, row: Row[Any], error: Exception | None, report: DeliveryReport,
            now: datetime, circuit: Circuit) -> None:
    if error is None:
        _mark(conn, row, {"state": "sent", "sent_at": now, "last_error": None})
        _log(conn, row, audit.SENT, None, now)
        bounces.delivered(conn, row.to_addr)
        circuit.passed(conn)
        report.sent += 1
    elif isinstance(error, TemporaryFailure):
        _retry_or_fail(runtime, conn, row, error, now, report)
    elif isinstance(error, PermanentFailure):
        _refused(conn, row, error, now, report, circuit)
    else:
        _mark(conn, row, {"state": "unknown", "last_error": str(error)})
        _log(conn, row, audit.UNKNOWN, "cut_off_mid_transaction", now, error=str(error))
        report.unknown += 1


def _refused(conn: Connection, row: Row[Any], error: PermanentFailure, now: datetime, report: DeliveryReport,
             circuit: Circuit) -> None:
    held = circuit.refused(conn, row.id, str(error), now) if error.policy else []
    if held:
        report.held += _hold(conn, held, circuit, str(error), now)
        return
    _mark(conn, row, {"state": "failed", "last_error": str(error)})
    _log(conn, row, audit.FAILED, POLICY_REFUSAL if error.policy else "rejected", now, error=str(error))
    if error.unknown_user:
        circuit.passed(conn)  # the server judged the recipient: it takes our mail
        bounces.hard_bounce(conn, row.to_addr, str(error), now)
    report.failed += 1


def _hold(conn: Connection, ids: list[int], circuit: Circuit, error: str, now: datetime) -> int:
    """Messages refused for our setup go back to the queue until the circuit's cool-down ends: they
    were never judged on their own, and go out once the setup is fixed."""
    until = circuit.until or now
    rows = list(conn.execute(select(outbox).where(outbox.c.id.in_(ids), outbox.c.state.in_(("failed", "sending")))))
    conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(
        state="queued", not_before=until, last_error=error, sent_at=None, claimed_by=None))
    for held in rows:
        _log(conn, held, audit.DEFERRED, CIRCUIT_OPEN, now, error=error, until=until.isoformat())
    return len(rows)


def _retry_or_fail(runtime: Runtime, conn: Connection, row: Row[Any], error: TemporaryFailure, now: datetime,
                   report: DeliveryReport) -> None:
    created = aware(row.created_at)
    assert created is not None
    if error.soft_bounce and bounces.soft_bounce(conn, row.to_addr, str(error), now):
        _mark(conn, row, {"state": "failed", "last_error": f"address suppressed after soft bounces: {error}"})
        _log(conn, row, audit.FAILED, "soft_bounces", now, error=str(error))
        report.failed += 1
        return
    if now - created > runtime.config.delivery.max_age:
        _mark(conn, row, {"state": "failed", "last_error": f"gave up after {row.attempts + 1} attempts: {error}"})
        _log(conn, row, audit.FAILED, "expired", now, error=str(error))
        report.failed += 1
        return
    retry_at = now + backoff(row.attempts + 1, MAX_RETRY_DELAY)
    _mark(conn, row, {"state": "queued", "not_before": retry_at, "last_error": str(error), "sent_at": None})
    _log(conn, row, audit.DEFERRED, "temporary_failure", now, error=str(error), until=retry_at.isoformat())
    report.retried += 1


async def _send(transport: Transport, runtime: Runtime, row: Row[Any]) -> Exception | None:
    """The outcome of one attempt, recorded on its row: one bad message never blocks those behind it."""
    try:
        message = wire(outgoing(runtime, row))
    except Exception as exc:  # nothing went out: this message can never be built, so it fails
        return PermanentFailure(f"message cannot be built: {type(exc).__name__}: {exc}")
    try:
        await transport.send(message)
    except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
        return exc
    except Exception as exc:  # the transport broke in a way it does not classify: it may have gone out
        return UncertainDelivery(f"{type(exc).__name__}: {exc}")
    return None


def _claim(runtime: Runtime, engine: Engine, now: datetime, report: DeliveryReport,
           limit: int) -> tuple[list[Row[Any]], bool]:
    with transaction(engine) as conn:
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


@dataclass
class _Run:
    """What the connections of one delivery share: the report, the pace, and the circuit as last seen."""
    runtime: Runtime
    engine: Engine
    report: DeliveryReport
    pacer: Pacer
    clock: Callable[[], datetime]
    stop: threading.Event | None
    batch: int
    window: int  # claimed at once for every connection: one look at the queue per round, not per batch
    circuit: Circuit | None = None
    done: bool = False
    claimed: list[Row[Any]] = field(default_factory=list)  # claimed, not yet taken by a connection

    def stopped(self) -> bool:
        return self.done or bool(self.stop and self.stop.is_set())


async def deliver(runtime: Runtime, engine: Engine, transport: Transport | Sequence[Transport],
                  stop: threading.Event | None = None, clock: Callable[[], datetime] = utcnow,
                  batch: int | None = None, pacer: Pacer | None = None) -> DeliveryReport:
    """Send everything due now over every connection of `transport` at once, until the outbox has
    nothing due or `stop` is set. A caller that delivers again keeps its `pacer` and transports, so
    the rate holds across ticks and connections are reused."""
    report = DeliveryReport()
    report.unknown += recover(engine, clock())
    lanes = list(transport) if isinstance(transport, Sequence) else [transport]
    delivery = runtime.config.delivery
    pacer = pacer or Pacer(delivery.rate_per_second)
    # A slow rate shrinks the batch to about a second of sending, so few messages sit in `sending`.
    size = batch or min(delivery.smtp.batch, max(1, int(pacer.rate // len(lanes))))
    run = _Run(runtime, engine, report, pacer, clock, stop, size, size * len(lanes))
    try:
        await asyncio.gather(*(_lane(run, lane) for lane in lanes))
    finally:
        unclaim(engine, [row.id for row in run.claimed])
    if run.circuit is not None and run.circuit.is_open(clock()):
        report.paused = run.circuit.describe()
    return report


async def _lane(run: _Run, transport: Transport) -> None:
    """One connection: take a batch of the round's claims (claiming the next round when none is left),
    send it, commit its outcomes together, again."""
    while not run.stopped():
        with run.engine.connect() as conn:  # every batch: another replica may have opened it
            run.circuit = Circuit.load(conn, run.runtime.config.delivery.smtp.circuit_after)
        if run.circuit.is_open(run.clock()):
            run.done = True
            return
        if not run.claimed:
            run.claimed, more = _claim(run.runtime, run.engine, run.clock(), run.report, run.window)
            if not more:
                run.done = True
                return
        claimed, run.claimed = run.claimed[:run.batch], run.claimed[run.batch:]
        with in_hand([row.id for row in claimed]):  # a run that fails midway leaves them to recover()
            await _send_batch(run, transport, _start(run.engine, claimed, run.clock()))
        await asyncio.sleep(0)  # let the other connections claim their turn


async def _send_batch(run: _Run, transport: Transport, rows: list[Row[Any]]) -> None:
    done: list[tuple[Row[Any], Exception | None]] = []
    for index, row in enumerate(rows):
        if not await _turn(run):
            _commit(run, done)
            _release(run.engine, rows[index:])
            return
        error = await _send(transport, run.runtime, row)
        done.append((row, error))
        if isinstance(error, PermanentFailure) and error.policy:
            _commit(run, done)  # the circuit counts it now, so no connection sends on into a refusing server
            done = []
    _commit(run, done)


async def _turn(run: _Run) -> bool:
    """Whether the next message may go: not stopping, the circuit closed, and its slot of the rate come."""
    def stopping() -> bool:
        return bool(run.stop and run.stop.is_set()) or bool(run.circuit and run.circuit.is_open(run.clock()))
    return not stopping() and await run.pacer.wait(stopping)


def _commit(run: _Run, done: list[tuple[Row[Any], Exception | None]]) -> None:
    if not done:
        return
    circuit = run.circuit or Circuit(run.runtime.config.delivery.smtp.circuit_after)
    now = run.clock()
    with transaction(run.engine) as conn:
        taken: list[Row[Any]] = []  # a run of messages in a row the server took, settled together
        for row, error in done:
            if error is None:
                taken.append(row)
                continue
            _taken(conn, taken, run.report, now, circuit)  # in order: a bounce count sees the sends before it
            taken = []
            _settle(run.runtime, conn, row, error, run.report, now, circuit)
        _taken(conn, taken, run.report, now, circuit)


def _taken(conn: Connection, rows: list[Row[Any]], report: DeliveryReport, now: datetime, circuit: Circuit) -> None:
    """What _settle does for each message sent, in four statements however many there are."""
    if not rows:
        return
    conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]))
                 .values(state="sent", sent_at=now, last_error=None))
    audit.record_many(conn, [{"event": audit.SENT, "account_id": r.account_id, "playbook_id": r.playbook_id,
                              "enrollment_id": r.enrollment_id, "contact": r.to_addr, "at": now,
                              "detail": {"outbox_id": r.id, "message_id": r.message_id}} for r in rows])
    addresses = list({r.to_addr.lower() for r in rows})
    for email in conn.execute(select(bounce_counts.c.email).where(bounce_counts.c.email.in_(addresses))).scalars():
        bounces.delivered(conn, email)  # a delivery ends a run of soft bounces
    circuit.passed(conn)
    report.sent += len(rows)


def _release(engine: Engine, rows: list[Row[Any]]) -> None:
    """Hand back messages of a batch not yet attempted, so a stop or an opened circuit loses nothing."""
    with transaction(engine) as conn:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]), outbox.c.state == "sending",
                                          outbox.c.claimed_by == WORKER)
                     .values(state="queued", claimed_by=None, sent_at=None, attempts=outbox.c.attempts - 1))


def counts(conn: Connection) -> dict[str, int]:
    return {state: n for state, n in conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))}
