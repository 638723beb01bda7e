"""`playbookd run --once`, again and again, against a mail server that misbehaves at random (every
class of reply, disconnects before and after DATA, stalls past the timeout), on a SQLite file and on
PostgreSQL. Nothing goes out twice, nothing is lost without a state that says why, and nobody is
suppressed for a reply that was not about their mailbox."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import playbookd, small_project
from faulty_smtp import HARD, SOFT, FaultySmtpServer
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import Engine

from playbookd.store.database import utcnow
from playbookd.store.schema import contacts, outbox, suppressions

HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
ACCOUNTS = 12
MAX_CYCLES = 6  # bounded: the outbox must settle well within this


def project(tmp_path: Path, db_url: str, port: int) -> Path:
    accounts = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n" + "".join(
        f"ACC-{i},Firm {i},5000,active,basic,adopted,maria@acme.example\n" for i in range(ACCOUNTS))
    people = "account_id,email,first_name,role,status,is_primary\n" + "".join(
        f"ACC-{i},p{i}@firm{i}.example,P{i},admin,active,true\n" for i in range(ACCOUNTS))
    # the circuit would pause delivery for minutes after three 5.7.1 in a row: this suite wants every
    # reply judged on its own (tests/delivery/test_circuit.py covers the pause)
    smtp = {"host": "127.0.0.1", "port": port, "timeout": 1, "circuit_after": 0}
    return small_project(tmp_path, accounts, people, {"hello": HELLO}, database=db_url,
                         delivery={"transport": "smtp", "smtp": smtp})


def time_passes(engine: Engine) -> None:
    """Retries wait minutes with backoff; here they are due at once."""
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.state == "queued").values(not_before=utcnow()))


def run_once(path: Path) -> None:
    done = playbookd("run", "--once", cwd=path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr  # 1: messages failed, said in the report


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-command-at-a-time", "pipelining"])
@pytest.mark.parametrize("seed", [7])
def test_a_misbehaving_server_never_causes_a_duplicate_a_silent_loss_or_a_wrong_bounce(
        tmp_path: Path, db_url: str, seed: int, pipelining: bool) -> None:
    with FaultySmtpServer(seed, stall=1.5, pipelining=pipelining) as server:
        path = project(tmp_path, db_url, server.port)
        engine = create_engine(db_url)
        try:
            for _ in range(MAX_CYCLES):
                run_once(path)
                with engine.connect() as conn:
                    if not conn.execute(select(outbox.c.id).where(outbox.c.state == "queued")).first():
                        break
                time_passes(engine)
            server.faults.healthy = True  # the server recovers: what still waits goes out now
            time_passes(engine)
            run_once(path)
            with engine.connect() as conn:
                rows = list(conn.execute(select(outbox)))
                suppressed = {r.email for r in conn.execute(select(suppressions))}
                bounced = {r.email for r in conn.execute(select(contacts).where(contacts.c.status == "bounced"))}
        finally:
            engine.dispose()
        faults = server.faults

    assert len(rows) == ACCOUNTS
    states = Counter(r.state for r in rows)
    assert set(states) <= {"sent", "failed", "unknown"}, states  # settled: nothing queued, claimed or sending
    assert states["sent"] and (states["failed"] or states["unknown"]), states  # the seed exercises both
    received = Counter(faults.received)
    assert max(received.values()) == 1, "an email went out twice"
    by_id = {r.message_id: r for r in rows}
    for message_id in received:
        # a body the server got is never queued again: sent, or unknown when its reply never came back
        assert by_id[message_id].state in ("sent", "unknown"), by_id[message_id]
    for row in rows:
        if row.state == "sent":
            assert received[row.message_id] == 1
        else:
            assert row.last_error, row  # failed or unknown says why
    for address in suppressed | bounced:
        said = faults.said[address]
        about_mailbox = any(code in reply for reply in said for code in HARD) or sum(SOFT in r for r in said) >= 3
        assert about_mailbox, f"{address} suppressed after {said}"
    for row in rows:
        if any(code in reply for reply in faults.said[row.to_addr] for code in HARD):
            assert row.to_addr in suppressed and row.state == "failed", row  # a real bounce is acted on
