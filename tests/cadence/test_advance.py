"""Cadences through full cycles on a real SQLite file: waits, exits, re-entry, variants, tasks, set."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cycle_helpers import ACCOUNTS

from playbookd import runtime
from playbookd.model.steps import Variant, pick_variant
from playbookd.store.schema import accounts, audit, enrollments, outbox, tasks, webhooks

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TWO_EMAILS = """\
id: two
trigger: {when: {status: active}}
exit_when: {plan: enterprise}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email: {template: login_nudge_short, to: admin}
"""


def test_wait_delays_the_next_step_until_it_is_due(make: Any) -> None:
    project = make({"two": TWO_EMAILS})
    project.run(T0)
    assert project.emails() == ["login_nudge.html.j2"]
    project.run(T0 + timedelta(days=2, hours=23))
    assert len(project.emails()) == 1
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_short.html.j2"]
    (enrollment,) = project.rows(enrollments)
    assert enrollment.state == "completed"


def test_exit_when_is_checked_before_every_step(make: Any) -> None:
    project = make({"two": TWO_EMAILS})
    project.run(T0)
    project.set_accounts(ACCOUNTS.replace(",basic,", ",enterprise,"))
    project.run(T0 + timedelta(days=4))
    assert len(project.emails()) == 1
    (enrollment,) = project.rows(enrollments)
    assert (enrollment.state, enrollment.step) == ("exited", 2)
    exits = project.rows(audit, audit.c.event == "exited")
    assert [e.reason for e in exits] == ["exit_when matched"]


ONCE = """\
id: once
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
"""


@pytest.mark.parametrize(("reenter", "runs_after", "expected"), [
    (None, [5, 100], 1),       # omitted: an account enters once, ever
    ("10d", [5], 1),           # not yet
    ("10d", [5, 10], 2),       # 10 days after the last entry
    ("10d", [10, 15, 20], 3),  # and again 10 days after that one, not after the first
])
def test_reenter_after(make: Any, reenter: str | None, runs_after: list[int], expected: int) -> None:
    text = ONCE + (f"reenter_after: {reenter}\n" if reenter else "")
    project = make({"once": text})
    project.run(T0)
    for days in runs_after:
        project.run(T0 + timedelta(days=days))
    assert len(project.rows(enrollments)) == expected
    assert len(project.emails()) == expected


def test_an_account_in_a_playbook_is_not_enrolled_twice_while_active(make: Any) -> None:
    project = make({"two": TWO_EMAILS.replace("id: two", "id: two\nreenter_after: 1d")})
    for hours in (0, 30, 50):
        project.run(T0 + timedelta(hours=hours))
    assert len(project.rows(enrollments)) == 1


TASK_AND_SET = """\
id: followup
trigger: {when: {status: active}}
steps:
  - task: {title: "Call {{ account.name }}", assign: csm, due_in: 2d}
  - set: {risk_flag: inactive}
"""


def test_task_is_stored_for_the_csm_and_set_updates_the_field(make: Any) -> None:
    project = make({"followup": TASK_AND_SET})
    project.run(T0)
    (task,) = project.rows(tasks)
    assert (task.title, task.assignee, task.state) == ("Call Harbor Foods", "maria@acme.example", "open")
    assert task.due_at.replace(tzinfo=UTC) == T0 + timedelta(days=2)
    (account,) = project.rows(accounts)
    assert account.data["risk_flag"] == "inactive"
    log = [(r.event, (r.detail or {}).get("action")) for r in project.rows(audit, audit.c.playbook_id == "followup")]
    assert log == [("entered", None), ("step_done", "task"), ("step_done", "set"), ("completed", None)]


def test_a_field_set_by_a_step_survives_the_next_sync(make: Any) -> None:
    project = make({"followup": TASK_AND_SET})
    project.run(T0)
    project.run(T0 + timedelta(hours=1))  # re-reads accounts.csv, which has no risk_flag column
    (account,) = project.rows(accounts)
    assert account.data["risk_flag"] == "inactive"


def test_variants_are_sticky_per_account_and_follow_the_weights() -> None:
    variants = [Variant("short", "a", 80), Variant("long", "b", 20)]
    picks = {f"ACC-{i}": pick_variant(variants, "p", f"ACC-{i}").name for i in range(2000)}
    assert all(pick_variant(variants, "p", acc).name == name for acc, name in picks.items())
    share = Counter(picks.values())["short"] / len(picks)
    assert 0.75 < share < 0.85
    other = {acc: pick_variant(variants, "q", acc).name for acc in picks}
    assert other != picks, "each playbook splits its audience independently"


VARIANTS = """\
id: ab
trigger: {when: {status: active}}
reenter_after: 1d
steps:
  - email:
      to: admin
      variants:
        short: {template: login_nudge_short, weight: 50}
        long: {template: login_nudge_long, weight: 50}
"""


def test_a_returning_account_gets_the_same_variant(make: Any) -> None:
    project = make({"ab": VARIANTS})
    for days in range(4):
        project.run(T0 + timedelta(days=days))
    rows = project.rows(outbox)
    assert len(rows) == 4 and len({(r.variant, r.template) for r in rows}) == 1


def test_enrollments_of_a_removed_playbook_exit_with_the_reason(make: Any) -> None:
    project = make({"two": TWO_EMAILS, "once": ONCE})
    project.run(T0)
    (project.path / "playbooks" / "two.yaml").unlink()
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    project.run(T0 + timedelta(days=4))
    (two,) = project.rows(enrollments, enrollments.c.playbook_id == "two")
    assert (two.state, two.reason) == ("exited", "playbook removed or retired")
    assert [e.reason for e in project.rows(audit, audit.c.event == "exited")] == ["playbook removed or retired"]


def test_a_wait_of_a_month_follows_the_calendar(make: Any) -> None:
    project = make({"two": TWO_EMAILS.replace("wait: 3d", "wait: 1mo")})
    end_of_january = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)
    project.run(end_of_january)
    (enrollment,) = project.rows(enrollments)
    assert enrollment.next_due_at.replace(tzinfo=UTC) == datetime(2026, 2, 28, 15, 0, tzinfo=UTC)
    project.run(datetime(2026, 2, 28, 14, 59, tzinfo=UTC))
    assert len(project.emails()) == 1
    project.run(datetime(2026, 2, 28, 15, 0, tzinfo=UTC))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_short.html.j2"]


STAMP = """\
id: stamp
trigger: {when: {status: active}}
steps:
  - set: {last_touch_at: "{{ now }}", target_arr: "{{ account.arr * 2 }}", touched_by: stamp}
"""
REACT = "id: react\ntrigger: {when: {last_touch_at: {changed: true}}}\nsteps:\n  - task: {title: t, assign: csm}\n"


def test_set_renders_its_values_and_other_playbooks_see_the_change(make: Any) -> None:
    project = make({"stamp": STAMP, "react": REACT})
    project.run(T0)
    (account,) = project.rows(accounts)
    assert account.data["last_touch_at"] == T0.isoformat() and account.data["target_arr"] == 10000
    assert account.data["touched_by"] == "stamp"
    assert set(account.changes) == {"last_touch_at", "target_arr", "touched_by"}
    project.run(T0 + timedelta(minutes=15))  # the next evaluation sees what the set step wrote
    assert [r.playbook_id for r in project.rows(enrollments)] == ["stamp", "react"]
    project.run(T0 + timedelta(minutes=30))
    assert len(project.rows(enrollments)) == 2 and account.changes != {}
    (account,) = project.rows(accounts)
    assert account.changes == {}  # seen, so consumed


def edit(project: Any, name: str, text: str) -> None:
    (project.path / "playbooks" / f"{name}.yaml").write_text(text)
    project.runtime = runtime.load(engine=project.engine, config=project.config)


def test_inserting_steps_into_a_live_playbook_keeps_each_enrollment_at_its_step(make: Any) -> None:
    project = make({"two": TWO_EMAILS})
    project.run(T0)  # first email sent; waits for the second
    edit(project, "two", TWO_EMAILS.replace("steps:\n", "steps:\n  - task: {title: Welcome call, assign: csm}\n"
                                                        "  - wait: 1d\n"))
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_short.html.j2"]
    assert project.rows(tasks) == []  # the new first steps are behind this enrollment
    (moved,) = project.rows(audit, audit.c.event == "step_moved")
    assert moved.detail["note"].endswith("moved from 3 to 5")
    (enrollment,) = project.rows(enrollments)
    assert enrollment.state == "completed"


def test_an_enrollment_whose_step_was_removed_goes_on_with_the_next_one(make: Any) -> None:
    three = TWO_EMAILS + "  - task: {title: Follow up, assign: csm}\n"
    project = make({"two": three})
    project.run(T0)
    edit(project, "two", three.replace("  - email: {template: login_nudge_short, to: admin}\n", ""))
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2"] and [t.title for t in project.rows(tasks)] == ["Follow up"]
    (moved,) = project.rows(audit, audit.c.event == "step_moved")
    assert "no longer exists; going on with step 3" in moved.detail["note"]


def test_a_new_step_at_the_place_of_a_sent_one_is_sent(make: Any) -> None:
    """The outbox key holds the step's identity: a later step that an edit puts at the position of
    an email already sent is not taken for it."""
    three = TWO_EMAILS.replace("  - wait: 3d\n", "  - email: {template: login_nudge_long, to: admin}\n  - wait: 3d\n")
    project = make({"two": three})
    project.run(T0)
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_long.html.j2"]
    edit(project, "two", three.replace("  - email: {template: login_nudge, to: admin}\n", "").replace(
        "  - email: {template: login_nudge_long, to: admin}\n", ""))  # the last email is now step 2
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_long.html.j2", "login_nudge_short.html.j2"]
    (enrollment,) = project.rows(enrollments)
    assert enrollment.state == "completed"


def test_an_email_an_edit_moves_behind_the_enrollment_is_not_sent_again(make: Any) -> None:
    project = make({"two": TWO_EMAILS})
    project.run(T0)  # first email sent; waits for the second
    first = "  - email: {template: login_nudge, to: admin}\n"
    edit(project, "two", TWO_EMAILS.replace(first, "") + first)  # the first email is now the last
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_short.html.j2"]
    assert len(project.rows(outbox)) == 2


def test_a_webhook_an_edit_moves_behind_the_enrollment_is_not_queued_again(make: Any) -> None:
    hook = "  - webhook: {url: \"http://127.0.0.1:9/hook\", body: {text: \"{{ account.name }}\"}}\n"
    project = make({"two": TWO_EMAILS.replace("steps:\n", "steps:\n" + hook)})
    project.run(T0)
    edit(project, "two", TWO_EMAILS + hook)  # the webhook is now the last step
    project.run(T0 + timedelta(days=3))
    assert len(project.rows(webhooks)) == 1 and len(project.rows(outbox)) == 2


def test_explicit_step_ids_survive_an_edit_of_the_step(make: Any) -> None:
    named = TWO_EMAILS.replace("  - email: {template: login_nudge_short, to: admin}\n",
                               "  - id: second-nudge\n    email: {template: login_nudge_short, to: admin}\n")
    project = make({"two": named})
    project.run(T0)
    edit(project, "two", named.replace("login_nudge_short", "login_nudge_long").replace(
        "  - wait: 3d\n", "  - wait: 3d\n  - task: {title: Check in, assign: csm}\n"))
    project.run(T0 + timedelta(days=3))
    assert project.emails() == ["login_nudge.html.j2", "login_nudge_long.html.j2"]
