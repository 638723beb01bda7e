"""`playbookd run --once` sends while it still renders and queues, on PostgreSQL and on SQLite (where
advance renders each batch before taking the one write lock): the real command as a subprocess, a real
SMTP server (aiosmtpd). Enough accounts for several advance batches (500 enrollments each), so
delivery runs while later batches are being rendered."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from cli_helpers import small_project
from smtp_server import SmtpServer, smtp_server_both_ways  # noqa: F401
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from playbookd.store.database import connect
from playbookd.store.schema import enrollments, outbox

ACCOUNTS = 3000  # enough batches that delivery has begun before the last one is queued, under a loaded CI
AT = "2026-03-04T15:00:00Z"
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"


def people(count: int) -> tuple[str, str]:
    accounts = ["id,name,annual_revenue,status,plan,lifecycle_stage,csm_email"]
    contacts = ["account_id,email,first_name,role,status,is_primary"]
    for n in range(count):
        accounts.append(f"ACC-{n:05d},Workspace {n},5000,active,basic,adopted,maria@acme.example")
        contacts.append(f"ACC-{n:05d},user{n}@customer{n}.example,Ana,admin,active,true")
    return "\n".join(accounts) + "\n", "\n".join(contacts) + "\n"


def project(tmp_path: Path, db_url: str, server: SmtpServer) -> Path:
    accounts, contacts = people(ACCOUNTS)
    smtp = {"host": "127.0.0.1", "port": server.port, "timeout": 10}
    return small_project(tmp_path, accounts, contacts, {"hello": HELLO}, database=db_url,
                         delivery={"transport": "smtp", "smtp": smtp, "processes": 2, "rate_per_second": 1_000_000},
                         launch={"warn_over": 10 * ACCOUNTS})


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "playbookd", "run", "--once", "--at", AT], cwd=path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def still_due(engine: Engine) -> int:
    """Enrollments advance has not reached yet: while there are any, it is still rendering."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(enrollments.c.state == "active")).scalar_one())


def in_states(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter({row.state: row.n for row in conn.execute(
            select(outbox.c.state, func.count().label("n")).group_by(outbox.c.state))})


def watch(engine: Engine, proc: subprocess.Popen[str], seen: list[int]) -> None:
    """Record how many messages were `sent` while enrollments were still due; bounded to two minutes."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        sent = in_states(engine)["sent"]
        if sent and still_due(engine):
            seen.append(sent)
            return
        time.sleep(0.05)


def test_run_once_sends_each_due_email_once_with_the_right_counts(
        tmp_path: Path, db_url: str, smtp_server: SmtpServer) -> None:
    """While advance is still running."""
    path = project(tmp_path, db_url, smtp_server)
    engine = connect(db_url)
    try:
        proc = start(path)
        seen: list[int] = []
        watcher = threading.Thread(target=watch, args=(engine, proc, seen), daemon=True)
        watcher.start()
        out, err = proc.communicate(timeout=300)
        watcher.join(timeout=10)
        left = in_states(engine)
    finally:
        engine.dispose()
    assert proc.returncode == 0, out + err
    assert "database is locked" not in out + err
    assert seen, "nothing was sent before advance had queued every email"
    assert f"delivery: sent {ACCOUNTS}, deferred 0, retrying 0, skipped 0, failed 0, unknown 0\n" in out
    beside = re.search(r"sent beside advance (\d+)", out)
    assert beside is not None and 0 < float(beside.group(1)) <= ACCOUNTS
    assert left == Counter(sent=ACCOUNTS)
    recipients = Counter(r for received in smtp_server.received for r in received.recipients)
    assert len(recipients) == ACCOUNTS and set(recipients.values()) == {1}  # every due email, once
    assert len({r.message["Message-ID"] for r in smtp_server.received}) == ACCOUNTS


def status(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "playbookd", "status"], cwd=path, capture_output=True, text=True,
                          timeout=120)
    return done.stdout + done.stderr


def kill_a_sender(engine: Engine, proc: subprocess.Popen[str], killed: list[int]) -> None:
    """SIGKILL the sending process (not the run's own process) once a batch of its is in flight while
    enrollments are still due; bounded to two minutes."""
    others = outbox.c.claimed_by.not_like(f"%:{proc.pid}:%")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with engine.connect() as conn:
            worker = conn.execute(select(outbox.c.claimed_by).where(outbox.c.state == "sending", others)
                                  .limit(1)).scalar()
        if worker is not None and still_due(engine):
            pid = int(worker.split(":")[-2])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.02)


def test_a_sender_dying_during_delivery_reaches_the_exit_code(
        tmp_path: Path, db_url: str, smtp_server: SmtpServer) -> None:
    """It dies while advance is still running, the delivery beside it failing."""
    path = project(tmp_path, db_url, smtp_server)
    smtp_server.recorder.data_delay = 0.01  # a batch stays in flight long enough to be caught there
    engine = connect(db_url)
    try:
        proc = start(path)
        killed: list[int] = []
        killer = threading.Thread(target=kill_a_sender, args=(engine, proc, killed), daemon=True)
        killer.start()
        out, err = proc.communicate(timeout=300)
        killer.join(timeout=10)
        after_first = in_states(engine)
        failed_status = status(path)
        again = start(path)  # it settles what the dead one had in hand, if the first run did not
        again_out, again_err = again.communicate(timeout=300)
        left = in_states(engine)
        again_status = status(path)
    finally:
        engine.dispose()
    assert killed, "no sending process had a batch in flight while advance was still running"
    assert proc.returncode == 1, out + err
    assert "1 sending process(es) failed: the worker process died" in err
    reported = re.search(r"delivery: sent (\d+), .* unknown (\d+)", out)
    assert reported is not None and 0 < int(reported.group(1)) <= after_first["sent"]  # the dead one's report died
    assert int(reported.group(2)) == after_first["unknown"]
    # the run after the one beside advance settled the dead one's
    assert after_first["unknown"] > 0 and set(after_first) <= {"sent", "unknown"}
    # the run's failure stays in status (the run's last delivery, after it, succeeded)
    # until a run in which every process did its part
    assert "had a sending process (delivery.processes) fail" in failed_status
    assert "1 sending process(es) failed: the worker process died" in failed_status
    assert again.returncode == 0, again_out + again_err
    assert "sending process" not in again_status
    assert set(left) <= {"sent", "unknown"} and left["sent"] + left["unknown"] == ACCOUNTS and left["unknown"] > 0
    received = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
    assert max(received.values()) == 1 and len(received) >= left["sent"]  # never twice
