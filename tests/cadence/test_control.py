"""The control group through full cycles on SQLite and PostgreSQL: enrolled, waits as the others do,
tracked for the goal, held back from every action; the others get the variant their group names."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from playbookd.store.schema import audit, enrollments, outbox, tasks

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
N = 24
CONTACTS = "account_id,email,first_name,role,status,is_primary\n" + "".join(
    f"ACC-{i:02d},ana{i}@harbor.example,Ana,admin,active,true\n" for i in range(N))
HELD_BACK = """\
id: held
trigger: {when: {status: active}}
control: 40%
steps:
  - email:
      to: admin
      variants:
        short: {template: login_nudge_short}
        long: {template: login_nudge_long}
  - wait: 3d
  - task: {title: "call {{ account.name }}", assign: csm}
goal: {when: {plan: pro}, within: 30d}
"""


def accounts(pro: Collection[int] = ()) -> str:
    return HEADER + "".join(f"ACC-{i:02d},Account {i},5000,active,{'pro' if i in pro else 'basic'},adopted,"
                            f"maria@acme.example\n" for i in range(N))


def test_the_control_group_is_enrolled_and_measured_but_gets_no_steps(make: Any, db_url: str) -> None:
    project = make({"held": HELD_BACK}, accounts_csv=accounts(), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    groups = {r.account_id: r.group_name for r in project.rows(enrollments)}
    control = {a for a, g in groups.items() if g == "control"}
    assert set(groups.values()) == {"control", "short", "long"} and 4 <= len(control) <= 16
    mail = {r.account_id: r for r in project.rows(outbox)}
    assert set(mail) == set(groups) - control
    assert all(mail[a].variant == groups[a] for a in mail)  # the variant sent is the recorded group

    converted = {int(a[-2:]) for a in sorted(control)[:2]} | {int(a[-2:]) for a in sorted(mail)[:3]}
    project.set_accounts(accounts(converted))
    project.run(T0 + timedelta(days=1))
    project.run(T0 + timedelta(days=3))
    rows = {r.account_id: r for r in project.rows(enrollments)}
    assert {a for a, r in rows.items() if r.goal_met_at is not None} == {f"ACC-{i:02d}" for i in converted}
    assert all(rows[a].state in ("completed", "exited") for a in rows)
    assert {r.account_id for r in project.rows(tasks)} & control == set()
    assert {r.state for a, r in rows.items() if a in control and r.goal_met_at is None} == {"completed"}
    skipped = project.rows(audit, audit.c.event == "step_skipped")
    assert {r.account_id for r in skipped} <= control and {r.reason for r in skipped} == {"control_group"}
    held_tasks = [r for r in skipped if r.step == 2]
    assert {r.account_id for r in held_tasks} == {a for a in control if rows[a].goal_met_at is None}
