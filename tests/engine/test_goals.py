"""Goals measured at every evaluation, through full cycles on SQLite and PostgreSQL: between steps,
after the last step, never, already at entry, past `within`, and `goal.exit`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from playbookd.engine import ranges
from playbookd.store.schema import audit, enrollments, outbox
from playbookd.sync.run import sync

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
CONTACTS = "account_id,email,first_name,role,status,is_primary\n" + "".join(
    f"ACC-{i},ana{i}@harbor.example,Ana,admin,active,true\n" for i in range(1, 5))
NUDGE = """\
id: nudge
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email: {template: login_nudge_short, to: admin}
goal:
  when: {plan: pro}
  within: 30d
"""


def accounts(plans: dict[int, str]) -> str:
    return HEADER + "".join(f"ACC-{i},Account {i},5000,active,{plan},adopted,maria@acme.example\n"
                            for i, plan in sorted(plans.items()))


def by_account(project: Any) -> dict[str, Any]:
    return {r.account_id: r for r in project.rows(enrollments)}


def test_goals_are_measured_when_they_first_hold(make: Any, db_url: str) -> None:
    plans = {1: "basic", 2: "basic", 3: "basic", 4: "pro"}
    project = make({"nudge": NUDGE}, accounts_csv=accounts(plans), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    plans[1] = "pro"  # between the two emails
    project.set_accounts(accounts(plans))
    project.run(T0 + timedelta(days=1))
    project.run(T0 + timedelta(days=3))
    plans[2] = "pro"  # after the last step
    project.set_accounts(accounts(plans))
    project.run(T0 + timedelta(days=10))
    project.run(T0 + timedelta(days=12))
    rows = by_account(project)

    assert rows["ACC-1"].goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=1)
    assert (rows["ACC-1"].state, rows["ACC-1"].reason) == ("exited", "goal met")  # goal.exit defaults to true
    assert rows["ACC-2"].goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=10)
    assert rows["ACC-2"].state == "completed"
    assert rows["ACC-3"].goal_met_at is None and not rows["ACC-3"].goal_at_entry
    # already true at entry: not a conversion, and the cadence runs to its end
    assert rows["ACC-4"].goal_at_entry and rows["ACC-4"].goal_met_at is None
    assert rows["ACC-4"].state == "completed"
    sent = [(r.account_id, r.template.split("/")[-1]) for r in project.rows(outbox)]
    assert ("ACC-1", "login_nudge_short.html.j2") not in sent  # the met goal ended it before the second email
    assert ("ACC-4", "login_nudge_short.html.j2") in sent
    met = project.rows(audit, audit.c.event == "goal_met")
    assert sorted(r.account_id for r in met) == ["ACC-1", "ACC-2"]


def test_a_goal_is_not_measured_past_within(make: Any, db_url: str) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=accounts({1: "basic"}), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro"}))
    project.run(T0 + timedelta(days=31))
    assert by_account(project)["ACC-1"].goal_met_at is None


def test_without_within_the_goal_is_watched_until_the_enrollment_ends(make: Any, db_url: str) -> None:
    text = NUDGE.replace("  within: 30d\n", "")
    project = make({"nudge": text}, accounts_csv=accounts({1: "basic", 2: "basic"}), contacts_csv=CONTACTS,
                   database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro", 2: "basic"}))
    project.run(T0 + timedelta(days=2))  # ACC-1 still active: measured
    project.run(T0 + timedelta(days=3))  # ACC-2 completes
    project.set_accounts(accounts({1: "pro", 2: "pro"}))
    project.run(T0 + timedelta(days=5))  # ACC-2 has ended: no longer watched
    rows = by_account(project)
    assert rows["ACC-1"].goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=2)
    assert rows["ACC-2"].goal_met_at is None


def test_goal_exit_false_keeps_the_cadence_going(make: Any, db_url: str) -> None:
    text = NUDGE.replace("  within: 30d\n", "  within: 30d\n  exit: false\n")
    project = make({"nudge": text}, accounts_csv=accounts({1: "basic"}), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro"}))
    project.run(T0 + timedelta(days=1))
    project.run(T0 + timedelta(days=3))
    (row,) = project.rows(enrollments)
    assert row.goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=1)
    assert row.state == "completed" and len(project.emails()) == 2


def test_a_one_email_playbook_records_its_goal(make: Any, db_url: str) -> None:
    """The finding: a playbook whose only step ran at entry never looked at its goal again."""
    text = ("id: once\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
            "goal: {when: {plan: pro}, within: 120d}\n")
    project = make({"once": text}, accounts_csv=accounts({1: "basic"}), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro"}))
    project.run(T0 + timedelta(days=40))
    (row,) = project.rows(enrollments)
    assert row.state == "completed" and row.goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=40)


def test_a_goal_that_is_also_the_exit_is_measured(make: Any, db_url: str) -> None:
    """The shipped renewal playbook: its exit_when and its goal are the same condition, and the exit at
    evaluation used to end the enrollment before any step looked at the goal."""
    text = ("id: renewal\ntrigger: {when: {plan: basic}}\nexit_when: {plan: pro}\nsteps:\n"
            "  - email: {template: login_nudge, to: admin}\n  - wait: 10d\n"
            "  - task: {title: follow up, assign: csm}\ngoal: {when: {plan: pro}, within: 30d}\n")
    project = make({"renewal": text}, accounts_csv=accounts({1: "basic", 2: "basic"}), contacts_csv=CONTACTS,
                   database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro", 2: "basic"}))
    project.run(T0 + timedelta(days=2))
    rows = by_account(project)
    assert rows["ACC-1"].goal_met_at.replace(tzinfo=UTC) == T0 + timedelta(days=2)
    assert (rows["ACC-1"].state, rows["ACC-1"].reason) == ("exited", "goal met")
    assert rows["ACC-2"].goal_met_at is None and rows["ACC-2"].state == "active"


def test_the_daemons_range_evaluation_measures_goals_at_its_moment(make: Any, db_url: str) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=accounts({1: "basic"}), contacts_csv=CONTACTS, database=db_url)
    project.run(T0)
    project.set_accounts(accounts({1: "pro"}))
    sync(project.engine, project.config)
    moment = T0 + timedelta(days=1, hours=2)
    ranges.plan(project.engine, moment, 25)
    assert ranges.work(project.runtime, project.engine) == 1
    (row,) = project.rows(enrollments)
    assert row.goal_met_at.replace(tzinfo=UTC) == moment and row.reason == "goal met"
