"""Delivery: drain the outbox through a transport, honouring every send-time rule.

A row moves queued -> sending -> sent | failed | unknown, or queued -> skipped. `sending`
is committed before the SMTP transaction starts, so after a crash a row still `sending`
was possibly delivered: it becomes `unknown` and is never resent without an operator.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.engine import Engine

from playbookd.delivery import bounces
from playbookd.delivery.holds import next_allowed
from playbookd.delivery.recipients import suppressed_for
from playbookd.delivery.recovery import WORKER, recover
from playbookd.delivery.transports import (
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
    Transport,
    UncertainDelivery,
    build_message,
)
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.database import aware, utcnow
from playbookd.store.schema import contacts, outbox

BYPASS_CAP = "operational"
RECIPIENT_LOCK = 0x63617073  # advisory lock class: one replica at a time counts a recipient's cap


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"sent {self.sent}, deferred {self.deferred}, retrying {self.retried}, skipped {self.skipped}, "
                f"failed {self.failed}, unknown {self.unknown}")


def _due(conn: Connection, now: datetime, limit: int) -> list[Row[Any]]:
    query = (select(outbox, contacts.c.timezone, contacts.c.status.label("contact_status"))
             .join(contacts, contacts.c.id == outbox.c.contact_id, isouter=True)
             .where(outbox.c.state == "queued", outbox.c.not_before <= now)
             .order_by(outbox.c.priority.desc(), outbox.c.not_before, outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=outbox)
    return list(conn.execute(query))


def _sent_in_window(conn: Connection, email: str, since: datetime) -> list[datetime]:
    # strictly after `since`: a message sent exactly one window ago no longer counts, so the hold it
    # causes always ends in the future (holding until "now" would defer the same row forever)
    return [t for (t,) in conn.execute(select(outbox.c.sent_at).where(
        outbox.c.to_addr == email, outbox.c.state.in_(["claimed", "sending", "sent", "unknown"]),
        outbox.c.sent_at > since).order_by(outbox.c.sent_at)) if t is not None]


def _cap_until(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime) -> datetime | None:
    cap = runtime.config.delivery.frequency_cap
    if cap is None or row.category == BYPASS_CAP:
        return None
    recent = [aware(t) for t in _sent_in_window(conn, row.to_addr, now - cap.per)]
    if len(recent) < cap.max:
        return None
    oldest = recent[-cap.max]
    assert oldest is not None
    return oldest + cap.per


def _hold(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime) -> tuple[str, datetime] | None:
    """(reason, until) when this message must wait, else None."""
    quiet = runtime.config.delivery.quiet_hours
    if quiet is not None:
        until = next_allowed(now, row.timezone or runtime.config.timezone, quiet)
        if until is not None:
            return "quiet_hours", until
    until = _cap_until(runtime, conn, row, now)
    return ("frequency_cap", until) if until is not None else None


def _cap_expired(runtime: Runtime, row: Row[Any], hold: tuple[str, datetime]) -> bool:
    """A message the cap would hold past its deadline is no longer timely: skip it instead."""
    cap = runtime.config.delivery.frequency_cap
    created = aware(row.created_at)
    return hold[0] == "frequency_cap" and cap is not None and created is not None and hold[1] > created + cap.max_wait


def _skip_reason(conn: Connection, row: Row[Any]) -> str | None:
    suppressed = suppressed_for(conn, [row.to_addr], row.category)
    if row.contact_status is not None and row.contact_status != "active":
        return "departed" if row.contact_status == "left" else f"contact_{row.contact_status}"
    return suppressed.get(row.to_addr.lower())


def _mark(conn: Connection, row: Row[Any], values: dict[str, Any]) -> None:
    conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))


def _log(conn: Connection, row: Row[Any], event: str, reason: str | None, now: datetime, **detail: Any) -> None:
    audit.record(conn, event, account_id=row.account_id, playbook_id=row.playbook_id,
                 enrollment_id=row.enrollment_id, contact=row.to_addr, reason=reason, at=now,
                 detail={"outbox_id": row.id, "message_id": row.message_id, **detail})


def _gate(runtime: Runtime, conn: Connection, row: Row[Any], now: datetime, report: Report) -> bool:
    """Decide, inside the claiming transaction, whether `row` goes out now."""
    hold = None
    reason = _skip_reason(conn, row)
    if reason is None:
        hold = _hold(runtime, conn, row, now)
        reason = "frequency_cap_deadline" if hold is not None and _cap_expired(runtime, row, hold) else None
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
    _mark(conn, row, {"state": "claimed", "claimed_by": WORKER, "sent_at": now})
    return True


def _start(engine: Engine, row: Row[Any], now: datetime) -> bool:
    """Claimed becomes sending in its own commit, just before the attempt: after a crash, `sending`
    means "may have gone out" and `claimed` means "certainly did not"."""
    with engine.begin() as conn:
        started = conn.execute(update(outbox).where(outbox.c.id == row.id, outbox.c.state == "claimed",
                                                    outbox.c.claimed_by == WORKER)
                               .values(state="sending", sent_at=now, attempts=outbox.c.attempts + 1))
        return started.rowcount == 1


def outgoing(runtime: Runtime, row: Row[Any]) -> Outgoing:
    headers = dict(row.headers)
    url = headers.pop("List-Unsubscribe-URL")
    delivery = runtime.config.delivery
    return Outgoing(row.message_id, delivery.from_, row.to_addr, row.subject, row.html, row.text, url,
                    delivery.reply_to, headers)


def backoff(attempts: int) -> timedelta:
    """Exponential with jitter: about 1m, 2m, 4m ... capped at 6h."""
    base = min(60 * 2 ** max(attempts - 1, 0), 6 * 3600)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _settle(runtime: Runtime, engine: Engine, row: Row[Any], error: Exception | None, report: Report,
            now: datetime) -> None:
    with engine.begin() as conn:
        if error is None:
            _mark(conn, row, {"state": "sent", "sent_at": now, "last_error": None})
            _log(conn, row, audit.SENT, None, now)
            bounces.delivered(conn, row.to_addr)
            report.sent += 1
        elif isinstance(error, TemporaryFailure):
            _retry_or_fail(runtime, conn, row, error, now, report)
        elif isinstance(error, PermanentFailure):
            _mark(conn, row, {"state": "failed", "last_error": str(error)})
            _log(conn, row, audit.FAILED, "rejected", now, error=str(error))
            if error.unknown_user:
                bounces.hard_bounce(conn, row.to_addr, str(error), now)
            report.failed += 1
        else:
            _mark(conn, row, {"state": "unknown", "last_error": str(error)})
            _log(conn, row, audit.UNKNOWN, "cut_off_mid_transaction", now, error=str(error))
            report.unknown += 1


def _retry_or_fail(runtime: Runtime, conn: Connection, row: Row[Any], error: TemporaryFailure, now: datetime,
                   report: Report) -> None:
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
    retry_at = now + backoff(row.attempts + 1)
    _mark(conn, row, {"state": "queued", "not_before": retry_at, "last_error": str(error), "sent_at": None})
    _log(conn, row, audit.DEFERRED, "temporary_failure", now, error=str(error), until=retry_at.isoformat())
    report.retried += 1


class Pacer:
    """Keeps sends at or under `rate` per second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        delay = self.next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next = max(self.next, time.monotonic()) + self.interval


async def _send(transport: Transport, runtime: Runtime, row: Row[Any]) -> Exception | None:
    try:
        await transport.send(build_message(outgoing(runtime, row)))
    except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
        return exc
    return None


def _lock_recipients(conn: Connection, rows: list[Row[Any]]) -> None:
    """Replicas claiming mail for the same address take turns, so each sees the other's claims when
    it counts the frequency cap; sorted, so two of them never wait on each other in a circle."""
    if conn.dialect.name != "postgresql":
        return  # SQLite writers are serialised already
    for address in sorted({row.to_addr for row in rows}):
        conn.execute(select(func.pg_advisory_xact_lock(RECIPIENT_LOCK, func.hashtext(address))))


def _claim(runtime: Runtime, engine: Engine, now: datetime, report: Report, limit: int) -> tuple[list[Row[Any]], bool]:
    with engine.begin() as conn:
        rows = _due(conn, now, limit)
        if runtime.config.delivery.frequency_cap is not None:
            _lock_recipients(conn, rows)
        return [row for row in rows if _gate(runtime, conn, row, now, report)], bool(rows)


async def deliver(runtime: Runtime, engine: Engine, transport: Transport, stop: threading.Event | None = None,
                  clock: Callable[[], datetime] = utcnow, batch: int = 20) -> Report:
    """Send everything due now, until the outbox has nothing due or `stop` is set."""
    report = Report()
    report.unknown += recover(engine, clock())
    pacer = Pacer(runtime.config.delivery.rate_per_second)
    while not (stop and stop.is_set()):
        claimed, more = _claim(runtime, engine, clock(), report, batch)
        if not more:
            break
        for index, row in enumerate(claimed):
            if stop and stop.is_set():
                _release(engine, claimed[index:])
                return report
            await pacer.wait()
            if _start(engine, row, clock()):
                _settle(runtime, engine, row, await _send(transport, runtime, row), report, clock())
    return report


def _release(engine: Engine, rows: list[Row[Any]]) -> None:
    """Hand back messages claimed but not yet attempted, so a stop loses nothing."""
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows]), outbox.c.state == "claimed",
                                          outbox.c.claimed_by == WORKER)
                     .values(state="queued", claimed_by=None, sent_at=None))


def counts(conn: Connection) -> dict[str, int]:
    return {state: n for state, n in conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))}
