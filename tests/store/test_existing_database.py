"""A database written before the package moved into layered subpackages keeps working after it.

`data/pre_layout.db` was made by the flat-module build: 40 accounts and 98 contacts synced, one
cycle run (12 enrolled, 6 sent, 6 deferred by quiet hours), an event and a suppression recorded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from cli_helpers import playbookd

from playbookd.store import migrate

MADE_BEFORE = Path(__file__).parent / "data" / "pre_layout.db"


def _project(tmp_path: Path) -> Path:
    assert playbookd("init", "project", "--accounts", "40", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    shutil.copy(MADE_BEFORE, project / "playbookd.db")
    return project


def _query(project: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return conn.execute(sql).fetchall()


def test_an_existing_database_reads_as_it_was_written(tmp_path: Path) -> None:
    project = _project(tmp_path)
    status = playbookd("status", cwd=project)
    assert status.returncode == 0, status.stderr
    assert "accounts: 40" in status.stdout and "suppressed: 1" in status.stdout
    assert "queued=6 sent=6" in status.stdout
    history = playbookd("history", "--account", "ACC-000003", cwd=project)
    assert history.returncode == 0 and history.stdout.strip(), history.stderr
    assert _query(project, "SELECT version_num FROM alembic_version") == [(migrate.head(),)]


def test_a_cycle_on_an_existing_database_sends_nothing_twice(tmp_path: Path) -> None:
    project = _project(tmp_path)
    sent_before = _query(project, "SELECT key, message_id FROM outbox WHERE state = 'sent' ORDER BY key")
    assert len(sent_before) == 6
    result = playbookd("run", "--once", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = _query(project, "SELECT key, message_id, state FROM outbox ORDER BY key")
    assert len({key for key, _, _ in rows}) == len(rows)  # one row per (enrollment, step, contact)
    after = {key: (message_id, state) for key, message_id, state in rows}
    assert all(after[key] == (message_id, "sent") for key, message_id in sent_before)


def test_enrollments_from_before_groups_are_reported_as_ungrouped(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = playbookd("report", "--format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sum(line["entered"] for line in lines) == 12
    assert {g["name"] for line in lines for g in line["groups"]} == {"ungrouped"}
    assert all(line["comparisons"] == [] for line in lines)
