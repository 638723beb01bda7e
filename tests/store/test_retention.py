"""Retention end to end: old bodies and audit entries leave the store, through `run --once --at`, `purge`
and the daemon's leader, on SQLite and PostgreSQL; metadata and undecided messages stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Daemon, playbookd, small_project
from smtp_server import free_port
from sqlalchemy import Engine, func, select, text

from playbookd.store.database import aware, connect
from playbookd.store.schema import audit

NOW = datetime.now(UTC).replace(microsecond=0)
HEADER = "id,name,annual_revenue,status,lifecycle_stage,csm_email\n"
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,champion,active,true\n"
            "ACC-2,bo@delta.example,Bo,champion,active,true\n")
LATER_CONTACT = "ACC-3,cy@echo.example,Cy,champion,active,true\n"
HELLO = """\
id: hello
category: product_tips
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: champion}
"""


def accounts(*ids: str) -> str:
    return HEADER + "".join(f"{i},Co {i},5000,active,adopted,maria@acme.example\n" for i in ids)


def ago(days: int) -> str:
    return (NOW - timedelta(days=days)).isoformat()


@pytest.fixture
def store(db_url: str) -> Iterator[Engine]:
    engine = connect(db_url)
    yield engine
    engine.dispose()


def query(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def oldest_audit(engine: Engine) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(func.min(audit.c.at))).scalar_one()  # type: ignore[no-any-return]


def project_at(tmp_path: Path, db_url: str, **config: Any) -> Path:
    project = small_project(tmp_path, accounts("ACC-1", "ACC-2"), CONTACTS, {"hello": HELLO}, database=db_url,
                            **config)
    first = playbookd("run", "--once", "--at", ago(500), cwd=project)
    assert first.returncode == 0, first.stderr
    return project


def test_run_once_drops_old_bodies_and_audit_in_batches_keeping_metadata_and_undecided(
        tmp_path: Path, db_url: str, store: Engine) -> None:
    project = project_at(tmp_path, db_url, retention={"batch": 1})
    # ACC-2's delivery was interrupted: an operator still has to decide, so its body must stay
    with store.begin() as conn:
        conn.execute(text("update outbox set state = 'unknown' where account_id = 'ACC-2'"))
    old_audit = query(store, "select count(*) from audit")[0][0]
    assert old_audit >= 2
    (project / "data" / "accounts.csv").write_text(accounts("ACC-1", "ACC-2", "ACC-3"))
    (project / "data" / "contacts.csv").write_text(CONTACTS + LATER_CONTACT)
    later = playbookd("run", "--once", "--at", ago(20), cwd=project)
    assert later.returncode == 0, later.stderr
    assert f"deleted {old_audit} audit entry(ies)" in later.stdout
    assert "dropped 1 message body(ies)" in later.stdout
    rows = query(store, "select account_id, state, subject, to_addr, message_id, html, text from outbox "
                        "order by account_id")
    assert [(r[0], r[1], r[5] == "" and r[6] == "") for r in rows] == [
        ("ACC-1", "sent", True), ("ACC-2", "unknown", False), ("ACC-3", "sent", False)]
    assert all(r[2] and r[3] and r[4] for r in rows)  # subject, recipient and message-id stay
    oldest = aware(oldest_audit(store))
    assert oldest is not None and oldest >= datetime.fromisoformat(ago(420))

    dropped, kept = (query(store, f"select id from outbox where account_id = '{a}'")[0][0] for a in ("ACC-1", "ACC-3"))
    shown = playbookd("outbox", "show", str(dropped), cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "body dropped after retention.bodies" in shown.stdout and "ana@harbor.example" in shown.stdout
    shown = playbookd("outbox", "show", str(kept), cwd=project)
    assert "body dropped" not in shown.stdout and "Cy" in shown.stdout
    assert playbookd("history", "--account", "ACC-1", cwd=project).returncode == 0


def test_purge_command_honours_the_configured_periods(tmp_path: Path, db_url: str, store: Engine) -> None:
    project = project_at(tmp_path, db_url, retention={"bodies": "1000d", "audit": "1000d"})
    kept = playbookd("purge", "--at", NOW.isoformat(), cwd=project)
    assert kept.returncode == 0, kept.stderr
    assert "dropped 0 message body(ies), deleted 0 audit entry(ies)" in kept.stdout
    gone = playbookd("purge", "--at", (NOW + timedelta(days=600)).isoformat(), cwd=project)
    assert gone.returncode == 0, gone.stderr
    assert "dropped 2 message body(ies)" in gone.stdout
    assert query(store, "select count(*) from outbox where html = '' and text = ''") == [(2,)]
    assert query(store, "select count(*) from audit") == [(0,)]


def test_the_daemon_leader_applies_retention(tmp_path: Path, db_url: str, store: Engine) -> None:
    project = project_at(tmp_path, db_url, http={"listen": f"127.0.0.1:{free_port()}"})
    daemon = Daemon(project)
    try:
        daemon.wait_for("bodies dropped", lambda: query(
            store, "select count(*) from outbox where html = '' and text = ''") == [(2,)])
        daemon.wait_for("old audit deleted", lambda: (aware(oldest_audit(store)) or NOW) > NOW - timedelta(days=400))
        assert any(m.startswith("retention: dropped 2") for m in daemon.messages())
    finally:
        assert daemon.stop() == 0
