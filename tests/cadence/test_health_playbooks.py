"""Playbooks on health through full cycles, on SQLite and PostgreSQL: a colour turning red, a drop within
a window, and a `set` step that moves the score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cli_helpers import ROOT, playbookd
from sqlalchemy import select

from playbookd.engine.explain import explain
from playbookd.store.schema import enrollments, health_history, outbox, tasks

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = "id,name,annual_revenue,status,csm_email,seat_utilization,nps,open_escalations,usage_fit\n"
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "H,hana@high.example,Hana,admin,active,true\nT,tom@tech.example,Tom,admin,active,true\n")


def shipped(*names: str) -> dict[str, str]:
    return {name: (ROOT / "playbooks" / f"{name}.yaml").read_text() for name in names}


def accounts(h: str, t: str = "T,Tiny Co,5000,active,,90,10,0,") -> str:
    return HEADER + f"H,Big Co,150000,active,csm@acme.example,{h}\n" + t + "\n"


def test_a_drop_of_15_points_within_30_days_enters_the_playbook_once(make: Any, db_url: str) -> None:
    project = make(shipped("health-drop"), accounts_csv=accounts("90,10,0,yes"), contacts_csv=CONTACTS,
                   database=db_url)
    project.run(T0)  # 100
    project.set_accounts(accounts("90,10,1,yes"))
    project.run(T0 + timedelta(days=3))  # 90: ten points down
    assert project.rows(enrollments) == []
    project.set_accounts(accounts("90,10,1,investigate"))
    project.run(T0 + timedelta(days=5))  # 80: twenty below the highest of the window
    for days in (6, 12, 29, 45, 80):
        project.run(T0 + timedelta(days=days))
    (entered,) = project.rows(enrollments)
    assert (entered.account_id, entered.entered_at.replace(tzinfo=UTC)) == ("H", T0 + timedelta(days=5))
    assert [t.title for t in project.rows(tasks)] == ["Big Co: health fell to 80.0 within a month. Check what changed"]

    with project.engine.connect() as conn:
        days = [(r.day.isoformat(), r.score, r.high, r.low) for r in conn.execute(
            select(health_history).where(health_history.c.account_id == "H").order_by(health_history.c.day))]
    assert days == [("2026-03-02", 100.0, 100.0, 100.0), ("2026-03-05", 90.0, 100.0, 90.0),
                    ("2026-03-07", 80.0, 90.0, 80.0)]
    report = explain(project.runtime, project.engine, "H", T0 + timedelta(days=6), "health-drop")
    assert report["playbooks"][0]["trigger"]["children"][0] == {
        "kind": "leaf", "result": True, "field": "health_score", "op": "dropped_by",
        "expected": "{points: 15, within: 30d}", "actual": {"current": 80.0, "highest": 100.0, "lowest": 80.0},
        "children": []}
    later = explain(project.runtime, project.engine, "H", T0 + timedelta(days=36), "health-drop")
    assert later["playbooks"][0]["trigger"]["children"][0]["result"] is False  # the drop left the window

    movers = playbookd("health", "--since", "2026-03-04", cwd=project.path).stdout.splitlines()
    assert movers[-2:] == ["ACCOUNT  SEGMENT     THEN  NOW  CHANGE  COLOR",
                           "H        high_touch  100   80   -20.0   green"]
    assert playbookd("health", "--since", "2026-03-02", cwd=project.path).stdout.splitlines()[-1] == "  none"


def test_turning_red_gives_high_touch_a_csm_task_and_tech_touch_an_email(make: Any, db_url: str) -> None:
    project = make(shipped("health-red-csm", "health-red-tech-touch"), accounts_csv=accounts("90,10,0,yes"),
                   contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    project.set_accounts(accounts("20,10,3,yes", "T,Tiny Co,5000,active,,20,2,3,"))
    report = project.run(T0 + timedelta(days=1))
    assert report.sync is not None and report.sync.health == "health: 2 account(s) scored, 2 moved (2 turned red)"
    assert [(t.account_id, t.assignee, t.title) for t in project.rows(tasks)] == [
        ("H", "csm@acme.example", "Big Co turned red (health 48.0): find out why and call them")]
    assert [(m.account_id, m.to_addr, m.template) for m in project.rows(outbox)] == [
        ("T", "tom@tech.example", "default/health_red.html.j2")]
    project.run(T0 + timedelta(days=2))
    assert len(project.rows(enrollments)) == 2, "still red is no new change"


def test_an_account_red_from_its_first_sync_has_not_turned_red(make: Any, db_url: str) -> None:
    project = make(shipped("health-red-csm"), accounts_csv=accounts("20,10,3,yes"), contacts_csv=CONTACTS,
                   database=db_url)
    project.run(T0)
    project.run(T0 + timedelta(hours=1))
    assert project.rows(enrollments) == []


JUDGE = """\
id: judge
trigger: {when: {nps: {lte: 6}}}
steps:
  - set: {usage_fit: "no"}
  - task: {title: "{{ account.name }} is now {{ account.health_color }} ({{ account.health_score }})", assign: csm}
"""


def test_a_set_step_rescores_the_account_and_its_move_starts_other_playbooks(make: Any, db_url: str) -> None:
    no_fit = (HEADER.replace(",usage_fit", "") + "H,Big Co,150000,active,csm@acme.example,55,5,0\n"
              "T,Tiny Co,5000,active,,90,10,0\n")
    project = make({"judge": JUDGE, **shipped("health-red-csm")}, accounts_csv=no_fit, contacts_csv=CONTACTS,
                   database=db_url)
    project.run(T0)  # H: (60*40 + 40*20 + 100*20) / 80 = 65, yellow; the CSM's view is not in the data
    assert [t.title for t in project.rows(tasks)] == ["Big Co is now red (52.0)"]  # 60*.4 + 40*.2 + 100*.2 + 0
    project.run(T0 + timedelta(hours=1))
    assert [(e.playbook_id, e.account_id) for e in project.rows(enrollments)] == [
        ("judge", "H"), ("health-red-csm", "H")]
    assert [t.title for t in project.rows(tasks)][1] == "Big Co turned red (health 52.0): find out why and call them"
