"""Delivery: drain the outbox through a transport, honouring every send-time rule.

A row moves queued -> claimed -> sending -> sent | failed | unknown, or queued -> skipped
(delivery.claims decides which go out). Each connection sends a batch, then in one commit settles
its outcomes and marks its next batch `sending`, so after a crash a row still `sending` was
possibly delivered: it becomes `unknown` and is never resent without an operator. At most
`smtp.connections` x `smtp.batch` rows are `sending` at once per process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.engine import Engine

from playbookd.delivery import bounces, recovery
from playbookd.delivery.backoff import backoff
from playbookd.delivery.circuit import Circuit
from playbookd.delivery.claims import DeliveryReport as DeliveryReport
from playbookd.delivery.claims import claim, mark, note, start
from playbookd.delivery.message import Outgoing, wire
from playbookd.delivery.pacing import Pacer
from playbookd.delivery.transports import PermanentFailure, TemporaryFailure, Transport, UncertainDelivery
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.database import aware, transaction, utcnow
from playbookd.store.leases import WORKER
from playbookd.store.schema import bounces as bounce_counts
from playbookd.store.schema import outbox

log = logging.getLogger("playbookd.delivery")
MAX_RETRY_DELAY = timedelta(hours=6)
POLICY_REFUSAL = "refused_by_policy"  # 5.7.x: our mail or setup, not the recipient; status raises it
CIRCUIT_OPEN = "circuit_open"  # held back: the server refuses every message for our setup (delivery/circuit)


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
        mark(conn, row, {"state": "sent", "sent_at": now, "last_error": None})
        note(conn, row, audit.SENT, None, now)
        bounces.delivered(conn, row.to_addr)
        circuit.passed(conn)
        report.sent += 1
    elif isinstance(error, TemporaryFailure):
        _retry_or_fail(runtime, conn, row, error, now, report)
    elif isinstance(error, PermanentFailure):
        _refused(conn, row, error, now, report, circuit)
    else:
        mark(conn, row, {"state": "unknown", "last_error": str(error)})
        note(conn, row, audit.UNKNOWN, "cut_off_mid_transaction", now, error=str(error))
        report.unknown += 1


def _refused(conn: Connection, row: Row[Any], error: PermanentFailure, now: datetime, report: DeliveryReport,
             circuit: Circuit) -> None:
    held = circuit.refused(conn, row.id, str(error), now) if error.policy else []
    if held:
        report.held += _hold(conn, held, circuit, str(error), now)
        return
    mark(conn, row, {"state": "failed", "last_error": str(error)})
    note(conn, row, audit.FAILED, POLICY_REFUSAL if error.policy else "rejected", now, error=str(error))
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
        note(conn, held, audit.DEFERRED, CIRCUIT_OPEN, now, error=error, until=until.isoformat())
    return len(rows)


def _retry_or_fail(runtime: Runtime, conn: Connection, row: Row[Any], error: TemporaryFailure, now: datetime,
                   report: DeliveryReport) -> None:
    created = aware(row.created_at)
    assert created is not None
    if error.soft_bounce and bounces.soft_bounce(conn, row.to_addr, str(error), now):
        mark(conn, row, {"state": "failed", "last_error": f"address suppressed after soft bounces: {error}"})
        note(conn, row, audit.FAILED, "soft_bounces", now, error=str(error))
        report.failed += 1
        return
    if now - created > runtime.config.delivery.max_age:
        mark(conn, row, {"state": "failed", "last_error": f"gave up after {row.attempts + 1} attempts: {error}"})
        note(conn, row, audit.FAILED, "expired", now, error=str(error))
        report.failed += 1
        return
    retry_at = now + backoff(row.attempts + 1, MAX_RETRY_DELAY)
    mark(conn, row, {"state": "queued", "not_before": retry_at, "last_error": str(error), "sent_at": None})
    note(conn, row, audit.DEFERRED, "temporary_failure", now, error=str(error), until=retry_at.isoformat())
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
    failed: bool = False  # a lane raised: the others stop as at a stop
    claimed: list[Row[Any]] = field(default_factory=list)  # claimed, not yet taken by a connection

    def stopped(self) -> bool:
        return self.done or self.failed or bool(self.stop and self.stop.is_set())


async def deliver(runtime: Runtime, engine: Engine, transport: Transport | Sequence[Transport],
                  stop: threading.Event | None = None, clock: Callable[[], datetime] = utcnow,
                  batch: int | None = None, pacer: Pacer | None = None) -> DeliveryReport:
    """Send everything due now over every connection of `transport` at once, until the outbox has
    nothing due or `stop` is set. A caller that delivers again keeps its `pacer` and transports, so
    the rate holds across ticks and connections are reused."""
    report = DeliveryReport()
    report.unknown += recovery.recover(engine, clock())
    lanes = list(transport) if isinstance(transport, Sequence) else [transport]
    delivery = runtime.config.delivery
    pacer = pacer or Pacer(delivery.rate_per_second)
    # A slow rate shrinks the batch to about a second of sending, so few messages sit in `sending`.
    size = batch or min(delivery.smtp.batch, max(1, int(pacer.rate // len(lanes))))
    run = _Run(runtime, engine, report, pacer, clock, stop, size, size * len(lanes))
    try:
        await _all_lanes(run, lanes)
    finally:
        recovery.unclaim(engine, [row.id for row in run.claimed])
    if run.circuit is not None and run.circuit.is_open(clock()):
        report.paused = run.circuit.describe()
    return report


async def _all_lanes(run: _Run, lanes: list[Transport]) -> None:
    """Every connection's lane; when one fails, the others stop as at a stop (settling what they sent,
    handing back the rest) and have ended before its error is raised: none sends on after deliver()."""
    tasks = [asyncio.ensure_future(_lane(run, lane)) for lane in lanes]
    try:
        await asyncio.gather(*tasks)
    except Exception as first:
        run.failed = True
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and outcome is not first:  # that one is raised, this one only logged
                log.error("another delivery connection failed too: %s: %s", type(outcome).__name__, outcome)
        raise


async def _lane(run: _Run, transport: Transport) -> None:
    """One connection: send a batch, then settle it and start the next in one commit (claiming the next
    round when the last is taken), again. Only the batch being sent is `sending`: at most one per lane."""
    done: list[tuple[Row[Any], Exception | None]] = []
    untried: list[Row[Any]] = []
    hand: list[int] = []
    try:
        while (rows := _next(run, done, untried)) is not None:
            recovery.let_go(hand)  # settled in that commit
            hand = [row.id for row in rows]
            recovery.hold(hand)  # a run that fails midway leaves them to recover()
            done, untried = await _send_batch(run, transport, rows)
            await asyncio.sleep(0)  # let the other connections claim their turn
    finally:
        recovery.let_go(hand)


def _next(run: _Run, done: list[tuple[Row[Any], Exception | None]], untried: list[Row[Any]]) -> list[Row[Any]] | None:
    """In one transaction: the outcomes of the batch sent, its untried rest back to the queue, and the
    next batch marked `sending`; None when this lane stops (a stop, an open circuit, nothing due).
    A round claimed with nothing to send (all skipped or deferred) is committed before the next."""
    while True:
        failure: Exception | None = None
        with transaction(run.engine) as conn:
            _outcomes(run, conn, done)
            _release(conn, untried)
            done, untried = [], []
            # every batch: another process or replica may have opened the circuit
            run.circuit = Circuit.load(conn, run.runtime.config.delivery.smtp.circuit_after)
            try:
                rows = _start_next(run, conn)
            except Exception as exc:  # the outcomes above are committed all the same: they were sent
                failure = exc
        if failure is not None:
            raise failure
        if rows != []:
            return rows


def _start_next(run: _Run, conn: Connection) -> list[Row[Any]] | None:
    """The next batch marked `sending`, in a savepoint: a claim that fails takes back only itself (and
    its counts), not the outcomes settled in the same transaction. [] when a round claimed nothing."""
    claimed, done, skipped, deferred = run.claimed, run.done, run.report.skipped, run.report.deferred
    savepoint = conn.begin_nested()
    try:
        found = _take(run, conn)
    except Exception as exc:
        run.claimed, run.done, run.report.skipped, run.report.deferred = claimed, done, skipped, deferred
        try:
            savepoint.rollback()
        except Exception as lost:  # the error ended the whole transaction (disk full, I/O): say both
            raise exc from lost
        raise
    savepoint.commit()
    return found


def _take(run: _Run, conn: Connection) -> list[Row[Any]] | None:
    assert run.circuit is not None
    claimed = False  # at most one round per transaction
    while not run.stopped():
        if run.circuit.is_open(run.clock()):
            run.done = True
            break
        if not run.claimed:
            if claimed:
                return []
            run.claimed, more = claim(run.runtime, conn, run.clock(), run.report, run.window)
            run.done, claimed = not more, True
            continue
        batch, run.claimed = run.claimed[:run.batch], run.claimed[run.batch:]
        if rows := start(conn, batch, run.clock()):
            return rows
    return None


async def _send_batch(run: _Run, transport: Transport, rows: list[Row[Any]]) -> tuple[
        list[tuple[Row[Any], Exception | None]], list[Row[Any]]]:
    """The outcomes of the batch, and the rest not tried when a stop or an opened circuit came first."""
    done: list[tuple[Row[Any], Exception | None]] = []
    for index, row in enumerate(rows):
        if not await _turn(run):
            return done, rows[index:]
        error = await _send(transport, run.runtime, row)
        done.append((row, error))
        if isinstance(error, PermanentFailure) and error.policy:
            with transaction(run.engine) as conn:  # the circuit counts it now: no lane sends on into a refusing server
                _outcomes(run, conn, done)
            done = []
    return done, []


async def _turn(run: _Run) -> bool:
    """Whether the next message may go: not stopping, the circuit closed, and its slot of the rate come."""
    def stopping() -> bool:
        return (run.failed or bool(run.stop and run.stop.is_set())
                or bool(run.circuit and run.circuit.is_open(run.clock())))
    return not stopping() and await run.pacer.wait(stopping)


def _outcomes(run: _Run, conn: Connection, done: list[tuple[Row[Any], Exception | None]]) -> None:
    if not done:
        return
    circuit = run.circuit or Circuit(run.runtime.config.delivery.smtp.circuit_after)
    now = run.clock()
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


def _release(conn: Connection, rows: list[Row[Any]]) -> None:
    """Hand back messages of a batch not yet attempted, so a stop or an opened circuit loses nothing."""
    if rows:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]), outbox.c.state == "sending",
                                          outbox.c.claimed_by == WORKER)
                     .values(state="queued", claimed_by=None, sent_at=None, attempts=outbox.c.attempts - 1))


def counts(conn: Connection) -> dict[str, int]:
    return {state: n for state, n in conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))}
