"""`playbookd tasks` and its subcommands, driven as a CSM would, on the shipped renewal playbook: a task
per account, closed, snoozed, reassigned; the follow-up email waits for the task."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cli_helpers import ROOT, json_lines, playbookd, small_project

RENEWAL = date.today() + timedelta(days=30)
ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,renewal_date,open_escalations\n"
            f"ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example,{RENEWAL},2\n"
            f"ACC-2,Summit Bank,150000,active,enterprise,adopted,,{RENEWAL},1\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,true\nACC-2,sam@summit.example,Sam,admin,active,true\n")


def _project(tmp_path: Path) -> Path:
    playbook = (ROOT / "playbooks" / "renewal-90d-escalations.yaml").read_text()
    return small_project(tmp_path, ACCOUNTS, CONTACTS, {"renewal-90d-escalations": playbook})


def _templates(project: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return conn.execute("SELECT account_id, template FROM outbox ORDER BY id").fetchall()


def test_a_csm_works_through_the_task_queue(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert playbookd("run", "--once", cwd=project).returncode == 0
    listed = {t["account"]: t for t in json_lines(playbookd("tasks", "--format", "json", cwd=project).stdout)}
    assert {a: t["assignee"] for a, t in listed.items()} == {"ACC-1": "maria@acme.example",
                                                             "ACC-2": "csm-leads@acme.example"}  # the fallback
    mine, theirs = listed["ACC-1"]["id"], listed["ACC-2"]["id"]

    done = playbookd("tasks", "done", str(mine), "--note", "summary sent", "--as", "maria", cwd=project)
    assert (done.returncode, done.stdout.strip()) == (0, f"task {mine}: open -> done"), done.stderr
    again = playbookd("tasks", "done", str(mine), "206", cwd=project)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"task {mine}: is done already; task 206: no such task; nothing was changed" in again.stderr
    assert playbookd("tasks", "snooze", str(theirs), cwd=project).returncode == 2  # --until is required

    snoozed = playbookd("tasks", "snooze", str(theirs), "--until", "3d", "--note", "customer on holiday", cwd=project)
    assert snoozed.returncode == 0 and f"task {theirs}: open -> snoozed until" in snoozed.stdout
    assert [t["id"] for t in json_lines(playbookd("tasks", "--format", "json", cwd=project).stdout)] == []
    moved = playbookd("tasks", "reassign", str(theirs), "--to", "Bob@Acme.example", cwd=project)
    assert moved.stdout.startswith(f"task {theirs}: snoozed -> snoozed until "), moved.stderr
    assert moved.stdout.strip().endswith("+00:00 (assignee bob@acme.example)")
    bobs = json_lines(playbookd("tasks", "--assignee", "bob@acme.example", "--all", "--format", "json",
                                cwd=project).stdout)
    assert [(t["id"], t["state"]) for t in bobs] == [(theirs, "snoozed")]
    later = (datetime.now(UTC) + timedelta(days=4)).isoformat()  # snooze over, due date (2d) passed
    overdue = playbookd("tasks", "--overdue", "--at", later, cwd=project).stdout
    assert f"{theirs} " in overdue and "(overdue)" in overdue and "Summit Bank" in overdue

    history = playbookd("history", "--account", "ACC-1", cwd=project).stdout
    assert "task_done" in history and "user=maria" in history and "reason=summary sent" in history
    assert playbookd("run", "--once", cwd=project).returncode == 0
    # ACC-1's task is done: its follow-up goes now; ACC-2's waits for its task, a week at most
    assert [t for a, t in _templates(project) if "followup" in t] == ["default/renewal_escalation_followup.html.j2"]
    assert [a for a, t in _templates(project) if "followup" in t] == ["ACC-1"]
