"""A delivery lane whose database work fails midway, on a SQLite file and on PostgreSQL, against a
real SMTP server: the failure is a trigger that refuses to mark one queued row `claimed`. What was
sent before stays `sent` (not left `sending`, to become `unknown`), and the other connections stop
as at a stop before deliver() raises: none of them sends on afterwards."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage as Message
from typing import Any

import pytest
from smtp_server import SmtpServer
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from playbookd.delivery.courier import Courier
from playbookd.delivery.transports import Transport
from playbookd.store.database import transaction
from playbookd.store.schema import outbox, suppressions

REFUSED = "claim refused by the test"
T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"


def project(make: Any, db_url: str, server: SmtpServer, connections: int, batch: int) -> Any:
    smtp = {"host": "127.0.0.1", "port": server.port, "timeout": 5, "connections": connections, "batch": batch}
    return make({"hello": HELLO}, database=db_url, delivery={"transport": "smtp", "smtp": smtp, "quiet_hours": None,
                                                              "frequency_cap": None, "rate_per_second": 100_000})


def queue(p: Any, count: int) -> None:
    """Messages k0.. to c0@harbor.example.., due at T0."""
    rows = [{"key": f"k{n}", "message_id": f"<m{n}@test.example>", "playbook_id": "hello", "account_id": "ACC-1",
             "to_addr": f"c{n}@harbor.example", "template": "login_nudge", "category": "product_tips",
             "priority": 0, "subject": f"Hi {n}", "html": "<p>Hi</p>", "text": "Hi", "state": "queued",
             "attempts": 0, "headers": {"List-Unsubscribe-URL": f"https://cs.example/u/{n}"}, "not_before": T0,
             "created_at": T0} for n in range(count)]
    with transaction(p.engine) as conn:
        conn.execute(insert(outbox), rows)


def sent_once(server: SmtpServer, count: int) -> bool:
    ids = [str(r.message["Message-ID"]) for r in server.received]
    return len(ids) == len(set(ids)) == count


def refuse_claim(engine: Engine, key: str, how: str = "ABORT") -> None:
    """From now on, marking the row of `key` `claimed` fails inside the claiming statement (on SQLite,
    `how` ROLLBACK ends the whole transaction, as a full disk or an I/O error does)."""
    with transaction(engine) as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_claim BEFORE UPDATE OF state ON outbox "
                                 f"WHEN NEW.state = 'claimed' AND NEW.key = '{key}' "
                                 f"BEGIN SELECT RAISE({how}, '{REFUSED}'); END")
            return
        conn.exec_driver_sql(f"CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS "
                             f"$$ BEGIN RAISE EXCEPTION '{REFUSED}'; END $$")
        conn.exec_driver_sql(f"CREATE TRIGGER refuse_claim BEFORE UPDATE ON outbox FOR EACH ROW "
                             f"WHEN (NEW.state = 'claimed' AND NEW.\"key\" = '{key}') EXECUTE FUNCTION refuse_claim()")


def allow_claims(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_claim" if conn.dialect.name == "sqlite"
                             else "DROP TRIGGER refuse_claim ON outbox")


def states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {row.key: row.state for row in conn.execute(select(outbox.c.key, outbox.c.state))}


def test_a_failed_claim_keeps_the_outcomes_settled_with_it(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    """One connection, batches of 5: the claim of the second round fails in the commit that settles
    the first batch; that batch is `sent` all the same, and the next run sends the rest, none `unknown`."""
    p = project(make, db_url, smtp_server, connections=1, batch=5)
    queue(p, 10)
    refuse_claim(p.engine, "k7")
    courier = Courier(p.runtime)
    try:
        with pytest.raises(DBAPIError, match=REFUSED):
            courier.deliver(p.engine, clock=lambda: T0)
        after = states(p.engine)
        allow_claims(p.engine)
        report = courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()
    assert after == {**{f"k{n}": "sent" for n in range(5)}, **{f"k{n}": "queued" for n in range(5, 10)}}
    assert (report.sent, report.unknown) == (5, 0)
    assert Counter(states(p.engine).values()) == Counter(sent=10) and sent_once(smtp_server, 10)


def test_a_claim_error_that_ends_the_transaction_is_reported_as_itself(
        make: Any, tmp_path: Any, smtp_server: SmtpServer) -> None:
    """SQLite ends the whole transaction on some errors; the savepoint is then gone too, and the error
    raised must be the claim's own, not that there is no savepoint to roll back to."""
    p = project(make, f"sqlite:///{tmp_path}/ended.db", smtp_server, connections=1, batch=5)
    queue(p, 10)
    refuse_claim(p.engine, "k7", how="ROLLBACK")
    courier = Courier(p.runtime)
    try:
        with pytest.raises(DBAPIError, match=REFUSED):
            courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()


def test_a_round_with_nothing_to_send_is_committed_before_the_next(
        make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    """The first round (5 rows) is all suppressed, so skipped; the claim of the second fails. The
    skips are kept: each round is claimed in a transaction of its own, not all in one left open."""
    p = project(make, db_url, smtp_server, connections=1, batch=5)
    queue(p, 10)
    with transaction(p.engine) as conn:
        conn.execute(insert(suppressions), [{"email": f"c{n}@harbor.example", "category": "*",
                                             "reason": "manual", "created_at": T0} for n in range(5)])
    refuse_claim(p.engine, "k7")
    courier = Courier(p.runtime)
    try:
        with pytest.raises(DBAPIError, match=REFUSED):
            courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()
    assert states(p.engine) == {**{f"k{n}": "skipped" for n in range(5)}, **{f"k{n}": "queued" for n in range(5, 10)}}
    assert not smtp_server.received


class Slow:
    """Every send waits `delay` seconds first: this connection is mid-batch when the other fails."""

    def __init__(self, inner: Transport, delay: float) -> None:
        self.inner, self.delay, self.name = inner, delay, inner.name

    async def send(self, message: Message) -> None:
        await asyncio.sleep(self.delay)
        await self.inner.send(message)

    async def close(self) -> None:
        await self.inner.close()


def test_a_failing_connection_stops_the_others_before_deliver_raises(
        make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    """Two connections, batches of 3: the fast one sends k0-k2 and fails claiming the next round while
    the slow one is sending k3 (of k3-k5). That one settles k3, hands back k4 and k5, and sends
    nothing more, not even while the courier closes its connections afterwards."""
    p = project(make, db_url, smtp_server, connections=2, batch=3)
    queue(p, 12)
    refuse_claim(p.engine, "k8")
    made: list[Transport] = []

    def wrap(transport: Transport) -> Transport:
        made.append(Slow(transport, 0.0 if not made else 0.5))
        return made[-1]

    courier = Courier(p.runtime, wrap)
    try:
        with pytest.raises(DBAPIError, match=REFUSED):
            courier.deliver(p.engine, clock=lambda: T0)
        raised = states(p.engine)
    finally:
        courier.close()
    assert Counter(raised.values()) == Counter(sent=4, queued=8)
    assert {key for key, state in raised.items() if state == "sent"} == {"k0", "k1", "k2", "k3"}
    assert states(p.engine) == raised and sent_once(smtp_server, 4)
