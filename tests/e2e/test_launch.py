"""Launching safely through the `playbookd` command, on SQLite and PostgreSQL: drafts, ramps, pauses,
`simulate --summary`, and the playbook settings refused with their place."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import edit_config, json_lines, playbookd, small_project
from sqlalchemy import create_engine, select

from playbookd.store.schema import enrollments, outbox

T0 = "2026-03-02T22:00:00+00:00"  # inside the quiet hours some tests set: mail waits until 08:00
ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,Alpha,150000,active,pro,adopted,maria@acme.example\n"
            "ACC-2,Beta,150000,active,pro,adopted,maria@acme.example\n"
            "ACC-3,Gamma,30000,active,pro,adopted,maria@acme.example\n"
            "ACC-4,Delta,5000,active,basic,adopted,maria@acme.example\n"
            "ACC-5,Epsilon,5000,active,basic,adopted,maria@acme.example\n"
            "ACC-6,Zeta,5000,active,basic,adopted,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,a@alpha.example,Ana,admin,active,true\n"
            "ACC-2,b@beta.example,Bo,admin,active,true\n"
            "ACC-3,c@gamma.example,Cy,admin,active,true\n"
            "ACC-4,d@delta.example,Di,admin,active,true\n"
            "ACC-4,d2@delta.example,Dan,admin,active,false\n"
            "ACC-5,e@epsilon.example,Ed,admin,active,true\n")  # ACC-6 has no contact: no email
WELCOME = """\
id: welcome
{head}
trigger: {{when: {{status: active}}}}
steps:
  - email: {{template: login_nudge, to: admin}}
  - wait: 3d
  - email: {{template: login_nudge_short, to: admin}}
"""
TASKS = """\
id: tasks
trigger: {when: {status: active}}
steps:
  - task: {title: "Call {{ account.name }}", assign: csm}
"""


def project(tmp_path: Path, db_url: str, head: str = "", **config: object) -> Path:
    return small_project(tmp_path, ACCOUNTS, CONTACTS, {"welcome": WELCOME.format(head=head), "tasks": TASKS},
                         database=db_url, **config)


def ok(*args: str | Path, cwd: Path) -> str:
    result = playbookd(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rows(db_url: str, table: object, *where: object) -> list:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table).where(*where).order_by(table.c.id)))  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_a_draft_never_sends_and_is_simulated_and_explained_when_asked(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "status: draft")
    for at in (T0, "2026-03-04T12:00:00+00:00", "2026-03-09T12:00:00+00:00"):
        ok("run", "--once", "--at", at, cwd=path)
    assert rows(db_url, outbox) == []
    assert {r.playbook_id for r in rows(db_url, enrollments)} == {"tasks"}  # the live one did act
    assert {e["playbook"] for e in json_lines(ok("simulate", "--format", "json", cwd=path))} <= {"tasks"}
    asked = json_lines(ok("simulate", "--playbook", "welcome", "--format", "json", cwd=path))
    assert [e["account"] for e in asked] == [f"ACC-{i}" for i in range(1, 7)]
    assert asked[3]["to"] == ["d2@delta.example", "d@delta.example"]
    explained = ok("explain", "ACC-1", "--playbook", "welcome", cwd=path)
    assert "welcome: draft, enters nothing until 'status: live'; if live: would enter now" in explained
    assert [line.split()[:2] for line in ok("status", cwd=path).splitlines() if line.startswith("welcome ")] == [
        ["welcome", "draft"]]
    (path / "playbooks" / "welcome.yaml").write_text(WELCOME.format(head="status: live"))
    ok("run", "--once", "--at", "2026-03-09T13:00:00+00:00", cwd=path)
    assert len(rows(db_url, outbox)) == 6  # the only thing that held it back was being a draft


def test_a_ramp_never_passes_its_daily_number(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "launch: {max_new_per_day: 2}")
    entered_after = []
    for at in ("2026-03-02T09:00:00+00:00", "2026-03-02T23:00:00+00:00", "2026-03-03T09:00:00+00:00",
               "2026-03-03T18:00:00+00:00", "2026-03-04T09:00:00+00:00", "2026-03-05T09:00:00+00:00"):
        ok("run", "--once", "--at", at, cwd=path)
        found = json_lines(ok("enrollments", "list", "--playbook", "welcome", "--format", "json", cwd=path))
        entered_after.append([e["account"] for e in found])
    assert [len(e) for e in entered_after] == [2, 2, 4, 4, 6, 6]
    assert entered_after[-1] == [f"ACC-{i}" for i in range(1, 7)]  # all qualified together: by id


def test_a_ramp_shows_who_waits_in_simulate_and_status(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "launch: {max_new_per_day: 2}")
    ok("run", "--once", "--at", "2026-03-02T09:00:00+00:00", cwd=path)
    # simulate at the same day: the next two wait for a later day, the rest too
    waiting = json_lines(ok("simulate", "--at", "2026-03-02T10:00:00+00:00", "--format", "json", cwd=path))
    assert [(e["account"], e.get("waits", False)) for e in waiting if e["playbook"] == "welcome"] == [
        ("ACC-3", True), ("ACC-4", True), ("ACC-5", True), ("ACC-6", True)]
    listing = ok("playbooks", "list", cwd=path)
    assert "welcome" in listing and "4 waiting" in listing


def test_simulate_summary_counts_and_warns_over_warn_over(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, launch={"warn_over": 5})
    ok("sync", cwd=path)
    result = playbookd("simulate", "--summary", "--format", "json", cwd=path)
    assert result.returncode == 0, result.stderr
    (welcome,) = [s for s in json_lines(result.stdout) if s["playbook"] == "welcome"]
    assert (welcome["accounts"], welcome["entering"], welcome["emails"], welcome["over"]) == (6, 6, 6, True)
    by_segment = {g["segment"]: (g["accounts"], g["entering"], g["emails"]) for g in welcome["groups"]}
    assert by_segment == {"high_touch": (2, 2, 2), "low_touch": (1, 1, 1), "tech_touch": (3, 3, 3)}
    assert all(g["action"] == "email" and g["what"].endswith("login_nudge.html.j2") for g in welcome["groups"])
    assert ("warning: welcome would send 6 emails in its first cycle, more than launch.warn_over (5)"
            in result.stderr)
    table = ok("simulate", "--summary", cwd=path)
    assert any(line.split()[:3] == ["welcome", "live", "tech_touch"] and line.split()[-3:] == ["3", "3", "3"]
               for line in table.splitlines()), table

    (path / "playbooks" / "welcome.yaml").write_text(WELCOME.format(head="launch: {warn_over: 6}"))
    assert "warning" not in playbookd("simulate", "--summary", cwd=path).stderr
    (path / "playbooks" / "welcome.yaml").write_text(WELCOME.format(head="launch: {max_new_per_day: 2}"))
    ramped = playbookd("simulate", "--summary", "--format", "json", cwd=path)
    (welcome,) = [s for s in json_lines(ramped.stdout) if s["playbook"] == "welcome"]
    assert (welcome["accounts"], welcome["entering"], welcome["emails"]) == (6, 2, 2) and not ramped.stderr


def test_pause_holds_the_outbox_and_freezes_waits_resume_goes_on(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url)
    edit_config(path, delivery={"quiet_hours": {"start": "20:00", "end": "08:00"}})
    ok("run", "--once", "--at", T0, cwd=path)
    assert [r.state for r in rows(db_url, outbox)] == ["queued"] * 6  # quiet hours: until 08:00
    assert ok("playbooks", "pause", "welcome", "--at", "2026-03-02T23:00:00+00:00", "--note", "copy review",
              cwd=path).strip() == "welcome is paused (was live)"
    ok("run", "--once", "--at", "2026-03-03T10:00:00+00:00", cwd=path)
    assert [r.state for r in rows(db_url, outbox)] == ["queued"] * 6  # held: not sent, not failed
    status = json.loads(ok("status", "--format", "json", cwd=path))
    (shown,) = [p for p in status["playbooks"] if p["playbook"] == "welcome"]
    assert (shown["status"], shown["file_status"], shown["held_messages"]) == ("paused", "live", 6)
    assert "playbooks pause" in shown["set_by"] and "copy review" in shown["set_by"]

    assert ok("playbooks", "resume", "welcome", "--at", "2026-03-05T09:00:00+00:00",
              cwd=path).strip() == "welcome is live (was paused)"
    (enrollment, *_) = json_lines(ok("enrollments", "list", "--playbook", "welcome", "--format", "json", cwd=path))
    # 2d23h of the 3-day wait were left at the pause; they run from the resume
    assert enrollment["next_due_at"].startswith("2026-03-08 08:00:00")
    ok("run", "--once", "--at", "2026-03-05T09:00:00+00:00", cwd=path)
    assert [r.state for r in rows(db_url, outbox)] == ["sent"] * 6
    ok("run", "--once", "--at", "2026-03-08T07:59:00+00:00", cwd=path)
    assert len(rows(db_url, outbox)) == 6
    ok("run", "--once", "--at", "2026-03-08T08:00:00+00:00", cwd=path)
    assert [r.state for r in rows(db_url, outbox)] == ["sent"] * 12
    history = ok("history", "--playbook", "welcome", cwd=path)
    assert "held" in history and "resumed" in history and "reason=live after 2 days, 10:00:00 held" in history


def test_pause_and_resume_refuse_what_they_cannot_do(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "status: draft")
    draft = playbookd("playbooks", "pause", "welcome", cwd=path)
    assert draft.returncode == 1 and "welcome is draft in its file" in draft.stderr
    unknown = playbookd("playbooks", "resume", "welcom", cwd=path)
    assert unknown.returncode == 1 and "no playbook 'welcom'; did you mean 'welcome'?" in unknown.stderr


def test_status_next_to_enabled_and_a_bad_ramp_are_refused_with_their_place(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "status: live\nenabled: true\nlaunch: {max_new_per_day: -5}")
    ok("db", "upgrade", cwd=path)
    result = playbookd("validate", cwd=path)
    assert result.returncode == 1
    file = path / "playbooks" / "welcome.yaml"
    assert f"{file}:3:10: 'enabled' and 'status' together" in result.stderr
    assert f"{file}:4:27: 'max_new_per_day' is a whole number, 1 or more" in result.stderr
    run = playbookd("run", "--once", cwd=path)
    assert run.returncode == 1 and "'enabled' and 'status' together" in run.stderr


def test_enabled_false_still_works_with_a_warning(tmp_path: Path, db_url: str) -> None:
    path = project(tmp_path, db_url, "enabled: false")
    ok("db", "upgrade", cwd=path)
    result = playbookd("validate", cwd=path)
    assert result.returncode == 0
    assert "'enabled' is deprecated: write 'status: retired'" in result.stderr
    assert playbookd("validate", "--strict", cwd=path).returncode == 1
    ok("run", "--once", "--at", T0, cwd=path)
    assert rows(db_url, outbox) == []
