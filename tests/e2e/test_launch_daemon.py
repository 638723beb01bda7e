"""The real daemon and a real SMTP server: a draft never sends, a ramp holds its daily number over many
evaluations and across replicas on PostgreSQL, and `playbooks pause|resume` act on a running daemon."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cli_helpers import Daemon, playbookd, small_project
from smtp_server import SmtpServer, free_port
from sqlalchemy import create_engine, func, select

from playbookd.store.database import aware, utcnow
from playbookd.store.schema import audit, enrollments, launch_days, outbox, ranges

DRAFT = """\
id: draft
status: draft
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge_long, to: admin}
"""
RAMPED = """\
id: ramped
launch: {max_new_per_day: 5}
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
"""


def data(count: int) -> tuple[str, str]:
    accounts = ["id,name,annual_revenue,status,plan,lifecycle_stage,csm_email"]
    contacts = ["account_id,email,first_name,role,status,is_primary"]
    for i in range(count):
        accounts.append(f"ACC-{i:03d},Co {i},5000,active,basic,adopted,maria@acme.example")
        contacts.append(f"ACC-{i:03d},admin{i}@co{i}.example,Ana,admin,active,true")
    return "\n".join(accounts) + "\n", "\n".join(contacts) + "\n"


def daemon_project(tmp_path: Path, db_url: str, smtp: SmtpServer, playbooks: dict[str, str],
                   accounts: int = 12) -> Path:
    accounts_csv, contacts_csv = data(accounts)
    port = free_port()
    path = small_project(tmp_path, accounts_csv, contacts_csv, playbooks, database=db_url,
                         http={"listen": f"127.0.0.1:{port}"}, logging={"format": "json", "level": "info"},
                         scheduler={"evaluate_every": "1s", "deliver_every": "1s"}, evaluation={"range_size": 4},
                         delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp.port}})
    assert playbookd("db", "upgrade", cwd=path).returncode == 0  # so the test may look before the daemon starts
    return path


def counted(db_url: str, query: object) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {str(k): int(v) for k, v in conn.execute(query)}  # type: ignore[call-overload]
    finally:
        engine.dispose()


def per_playbook(db_url: str) -> dict[str, int]:
    return counted(db_url, select(enrollments.c.playbook_id, func.count()).group_by(enrollments.c.playbook_id))


def evaluations(db_url: str) -> int:
    runs = counted(db_url, select(ranges.c.run_at, func.count()).where(ranges.c.state == "done")
                   .group_by(ranges.c.run_at))
    return len(runs)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def test_a_draft_never_sends_and_a_ramp_holds_over_many_evaluations(tmp_path: Path, db_url: str,
                                                                      smtp_server: SmtpServer,
                                                                      daemons: list[Daemon]) -> None:
    path = daemon_project(tmp_path, db_url, smtp_server, {"draft": DRAFT, "ramped": RAMPED})
    daemons.append(Daemon(path))
    daemon = daemons[0]
    daemon.wait_for("five evaluations", lambda: evaluations(db_url) >= 5)
    daemon.wait_for("the ramp's mail sent", lambda: len(smtp_server.received) >= 5)
    daemon.wait_for("two more evaluations", lambda: evaluations(db_url) >= 7)
    assert daemon.stop() == 0
    assert per_playbook(db_url) == {"ramped": 5}
    assert list(counted(db_url, select(launch_days.c.day, launch_days.c.entered)).values()) == [5]
    assert sorted(m.recipients[0] for m in smtp_server.received) == [f"admin{i}@co{i}.example" for i in range(5)]


def test_pause_and_resume_reach_a_running_daemon(tmp_path: Path, db_url: str, smtp_server: SmtpServer,
                                                 daemons: list[Daemon]) -> None:
    path = daemon_project(tmp_path, db_url, smtp_server, {"ramped": RAMPED.replace("launch: {max_new_per_day: 5}",
                                                                                   "")}, accounts=3)
    paused = playbookd("playbooks", "pause", "ramped", "--note", "before launch", cwd=path)
    assert paused.returncode == 0, paused.stderr
    daemons.append(Daemon(path))
    daemon = daemons[0]
    daemon.wait_for("three evaluations", lambda: evaluations(db_url) >= 3)
    assert per_playbook(db_url) == {} and smtp_server.received == []
    resumed = playbookd("playbooks", "resume", "ramped", cwd=path)
    assert resumed.returncode == 0, resumed.stderr
    daemon.wait_for("the mail, without a reload", lambda: len(smtp_server.received) == 3)
    assert daemon.stop() == 0
    assert Counter(r.state for r in _outbox(db_url)) == {"sent": 3}


def _outbox(db_url: str) -> list:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(outbox)))
    finally:
        engine.dispose()


def test_replicas_sharing_ranges_hold_the_ramp(tmp_path: Path, pg_url: str, smtp_server: SmtpServer,
                                               daemons: list[Daemon]) -> None:
    path = daemon_project(tmp_path, pg_url, smtp_server, {"ramped": RAMPED}, accounts=40)
    config = yaml.safe_load((path / "config.yaml").read_text())
    for index in range(3):
        config["http"] = {"listen": f"127.0.0.1:{free_port()}"}
        (path / f"config-{index}.yaml").write_text(yaml.safe_dump(config))
        daemons.append(Daemon(path, {"PLAYBOOKD_CONFIG": f"config-{index}.yaml"}, name=f"replica-{index}"))
    daemons[0].wait_for("evaluations", lambda: evaluations(pg_url) >= 6, timeout=120)
    workers = counted(pg_url, select(ranges.c.claimed_by, func.count()).group_by(ranges.c.claimed_by))
    daemons[0].wait_for("the ramp's mail sent", lambda: len(smtp_server.received) >= 5)
    for daemon in daemons:
        assert daemon.stop() == 0
    assert per_playbook(pg_url) == {"ramped": 5}
    assert len(smtp_server.received) == 5
    assert len(workers) >= 2, f"the ranges were shared out: {workers}"


WAITS = """\
id: waits
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 15s
  - email: {template: login_nudge_short, to: admin}
"""


def _table(db_url: str, table: object, order: object) -> list:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table).order_by(order)))  # type: ignore[call-overload]
    finally:
        engine.dispose()


def test_a_pause_freezes_the_waits_of_a_running_daemon(tmp_path: Path, db_url: str, smtp_server: SmtpServer,
                                                        daemons: list[Daemon]) -> None:
    path = daemon_project(tmp_path, db_url, smtp_server, {"waits": WAITS}, accounts=2)
    daemons.append(Daemon(path))
    daemon = daemons[0]
    daemon.wait_for("the first emails", lambda: len(smtp_server.received) == 2)
    assert playbookd("playbooks", "pause", "waits", cwd=path).returncode == 0
    before = {r.id: aware(r.next_due_at) for r in _table(db_url, enrollments, enrollments.c.id)}
    latest = max(due for due in before.values() if due is not None)
    time.sleep(max(0.0, (latest - utcnow()).total_seconds()) + 4)  # the waits would be over by now
    assert len(smtp_server.received) == 2
    assert playbookd("playbooks", "resume", "waits", cwd=path).returncode == 0
    after = {r.id: aware(r.next_due_at) for r in _table(db_url, enrollments, enrollments.c.id)}
    marks = {r.event: aware(r.at) for r in _table(db_url, audit, audit.c.id) if r.event in ("held", "resumed")}
    held = marks["resumed"] - marks["held"]
    assert held > timedelta(seconds=4)
    assert all(after[i] == due + held for i, due in before.items() if due is not None)  # each keeps what it had left
    daemon.wait_for("the second emails", lambda: len(smtp_server.received) == 4)
    assert daemon.stop() == 0
