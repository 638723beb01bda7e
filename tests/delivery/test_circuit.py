"""The circuit breaker against a real SMTP server that refuses our mail (550 5.7.1) and then takes
it again; on a SQLite file and on PostgreSQL, through full cycles."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from smtp_server import SmtpServer

from playbookd.cli.output import status_data
from playbookd.service.metrics import exposition
from playbookd.store.schema import audit, outbox

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
RELAY_DENIED = "550 5.7.1 Relaying denied"
ACCOUNTS = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n" + "".join(
    f"ACC-{i},Firm {i},5000,active,basic,adopted,maria@acme.example\n" for i in range(1, 7))
CONTACTS = "account_id,email,first_name,role,status,is_primary\n" + "".join(
    f"ACC-{i},p{i}@firm{i}.example,P{i},admin,active,true\n" for i in range(1, 7))


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


def project(make: Any, db_url: str, server: SmtpServer) -> Any:
    smtp = {"host": "127.0.0.1", "port": server.port, "timeout": 5, "circuit_after": 3}
    return make({"hello": HELLO}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url,
                delivery={"transport": "smtp", "smtp": smtp})


def states(p: Any) -> list[str]:
    return sorted(r.state for r in p.rows(outbox))


def held(p: Any) -> int:
    return len(p.rows(audit, audit.c.event == "deferred", audit.c.reason == "circuit_open"))


def test_relay_refusals_in_a_row_pause_delivery_then_it_resumes(make: Any, db_url: str, server: SmtpServer,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    server.recorder.refuse_all = RELAY_DENIED
    p = project(make, db_url, server)
    with caplog.at_level(logging.WARNING, logger="playbookd.delivery"):
        report = p.run(T0)
    # three refused in a row: the circuit opens, they go back to the queue, the other three wait untried
    assert states(p) == ["queued"] * 6 and held(p) == 3
    assert sorted(r.attempts for r in p.rows(outbox)) == [0, 0, 0, 1, 1, 1]
    assert report.delivery.held == 3 and report.delivery.paused and "5.7.1 Relaying denied" in report.delivery.paused
    assert any(report.delivery.paused == e for e in report.errors)  # run --once exits 1, saying why
    paused = status_data(p.engine)["smtp_circuit"]
    assert paused["last_reply"] == "RCPT: 550 5.7.1 Relaying denied" and paused["openings"] == 1
    until = datetime.fromisoformat(paused["until"])
    assert T0 + timedelta(seconds=47) < until < T0 + timedelta(seconds=73)  # backoff: about a minute
    assert b"playbookd_smtp_circuit_open 1.0" in exposition(p.engine)
    assert any(r.getMessage().startswith("delivery paused until") and "Relaying denied" in r.getMessage()
               for r in caplog.records)

    p.run(T0 + timedelta(seconds=40))  # during the cool-down nothing is tried
    assert held(p) == 3 and sorted(r.attempts for r in p.rows(outbox)) == [0, 0, 0, 1, 1, 1]

    p.run(T0 + timedelta(seconds=80))  # one try after it; refused again: open for longer
    assert held(p) == 4 and states(p) == ["queued"] * 6
    paused = status_data(p.engine)["smtp_circuit"]
    assert paused["openings"] == 2
    assert datetime.fromisoformat(paused["until"]) > T0 + timedelta(seconds=80 + 95)

    server.recorder.refuse_all = None  # the relay is fixed
    with caplog.at_level(logging.WARNING, logger="playbookd.delivery"):
        report = p.run(T0 + timedelta(seconds=80 + 150))
    assert states(p) == ["sent"] * 6 and len(server.received) == 6
    assert report.delivery.paused is None and report.errors == []
    assert status_data(p.engine)["smtp_circuit"] is None
    assert b"playbookd_smtp_circuit_open 0.0" in exposition(p.engine)
    assert any(r.getMessage().startswith("delivery resumed") for r in caplog.records)


def test_refusals_fewer_than_circuit_after_fail_their_messages_only(make: Any, db_url: str,
                                                                   server: SmtpServer) -> None:
    for address in ("p2@firm2.example", "p5@firm5.example"):
        server.recorder.refuse[address] = "554 5.7.1 Message refused as spam"
    p = project(make, db_url, server)
    report = p.run(T0)
    assert states(p) == ["failed", "failed", "sent", "sent", "sent", "sent"]
    assert report.delivery.paused is None and held(p) == 0
    assert status_data(p.engine)["smtp_circuit"] is None
