"""`playbookd forget EMAIL`: a person's data leaves the store, and the address stays suppressed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cli_helpers import playbookd

from playbookd.delivery.forget import hashed
from playbookd.delivery.recipients import suppressed_for
from playbookd.store.database import connect


def query(project: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return conn.execute(sql, args).fetchall()


def test_forget_erases_the_person_and_keeps_them_unsubscribed(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "60", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    assert playbookd("run", "--once", cwd=project).returncode == 0
    ((email, sent),) = query(project, "SELECT to_addr, count(*) FROM outbox GROUP BY to_addr ORDER BY to_addr LIMIT 1")
    assert playbookd("suppress", "add", email, "--category", "renewals", cwd=project).returncode == 0
    shouted = email.upper()  # however it is typed
    local, _, domain = email.partition("@")
    result = playbookd("forget", f'"{local.upper()}"(typed by hand)@{domain.upper()}', cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"forgot {email}: 1 contact(s), {sent} message(s), ")
    everywhere = [("contacts", "email"), ("outbox", "to_addr"), ("audit", "contact"), ("suppressions", "email")]
    for table, column in everywhere:
        assert query(project, f"SELECT count(*) FROM {table} WHERE lower({column}) = ?", email) == [(0,)]
    assert query(project, "SELECT count(*) FROM outbox WHERE html LIKE ?", f"%{email}%") == [(0,)]
    assert set(query(project, "SELECT category, reason FROM suppressions WHERE email = ?", hashed(email))) == {
        ("renewals", "manual"), ("*", "forgotten")}
    # the CRM still has them: the next sync brings the contact back, but they get nothing
    assert playbookd("sync", cwd=project).returncode == 0
    engine = connect(f"sqlite:///{project}/playbookd.db")
    with engine.connect() as conn:
        assert suppressed_for(conn, [shouted], "product_tips") == {shouted: "forgotten"}
        assert suppressed_for(conn, [shouted], "renewals")[shouted] in ("manual", "forgotten")
    engine.dispose()
