"""Continuous exits, on a fixed clock, through full cycles on SQLite and PostgreSQL: an enrollment
ends at the evaluation where its exit holds, and mail it had queued is never sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cycle_helpers import ACCOUNTS
from smtp_server import free_port

from playbookd.service import cycle
from playbookd.store.schema import audit, enrollments, outbox
from playbookd.store.schema import webhooks as webhook_table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday
HEADER = ACCOUNTS.splitlines()[0] + ",last_login_at\n"
INACTIVE = HEADER + "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example,2026-02-01T09:00:00Z\n"
NUDGE = """\
id: nudge
trigger: {when: {last_login_at: {older_than: 7d}}}
exit_when: {last_login_at: {within_last: 1d}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email: {template: login_nudge_short, to: admin}
  - task: {title: "{{ account.name }} still inactive", assign: csm}
"""
CHURN = {"exit_when": {"status": {"in": ["churned", "cancelled"]}}}
QUIET = {"quiet_hours": {"start": "14:00", "end": "20:00"}, "frequency_cap": None, "rate_per_second": 1000}


def exits(project: Any) -> list[str | None]:
    return [r.reason for r in project.rows(audit, audit.c.event == "exited")]


def test_an_exit_that_holds_between_two_steps_ends_the_enrollment_at_that_evaluation(make: Any,
                                                                                      db_url: str) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=INACTIVE, database=db_url)
    project.run(T0)
    assert project.emails() == ["login_nudge.html.j2"]
    project.set_accounts(INACTIVE.replace("2026-02-01T09:00:00Z", "2026-03-03T10:00:00Z"))  # logged in, day 1
    project.run(T0 + timedelta(days=1))
    (enrollment,) = project.rows(enrollments)
    assert (enrollment.state, enrollment.reason) == ("exited", "exit_when matched")
    project.run(T0 + timedelta(days=4))  # when the second email was due, the login is 2 days old
    assert project.emails() == ["login_nudge.html.j2"]
    assert exits(project) == ["exit_when matched"]


def test_a_churned_account_gets_nothing_after_the_sync_that_says_so(make: Any, db_url: str) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=INACTIVE, database=db_url, delivery=QUIET, **CHURN)
    project.run(T0)  # 15:00 UTC: quiet hours hold the first email
    assert [r.state for r in project.rows(outbox)] == ["queued"]
    project.set_accounts(INACTIVE.replace(",active,", ",churned,"))
    cycle.run_sync(project.runtime, project.engine, now=T0 + timedelta(hours=1))
    report = cycle.deliver_due(project.runtime, project.engine, clock=lambda: T0 + timedelta(hours=6))
    assert report.skipped == 1 and report.sent == 0  # before any evaluation ended the enrollment
    (mail,) = project.rows(outbox)
    assert (mail.state, mail.last_error) == ("skipped", "account_exited")
    project.run(T0 + timedelta(hours=7))
    assert exits(project) == ["account matches config exit_when"]
    project.run(T0 + timedelta(days=30))
    assert [r.state for r in project.rows(outbox)] == ["skipped"]
    assert len(project.rows(enrollments)) == 1  # a churned account enters nothing again


def test_mail_queued_by_an_enrollment_that_exited_is_skipped_at_send_time(make: Any, db_url: str) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=INACTIVE, database=db_url, delivery=QUIET)
    project.run(T0)
    project.set_accounts(INACTIVE.replace("2026-02-01T09:00:00Z", "2026-03-02T15:30:00Z"))
    project.run(T0 + timedelta(hours=1))  # still quiet hours; the evaluation ends the enrollment
    project.run(T0 + timedelta(hours=6))
    (mail,) = project.rows(outbox)
    assert (mail.state, mail.last_error) == ("skipped", "enrollment_exited")
    assert [r.reason for r in project.rows(audit, audit.c.event == "step_skipped")] == ["enrollment_exited"]


def test_an_account_that_leaves_the_audience_leaves_the_playbook(make: Any, db_url: str) -> None:
    narrow = NUDGE.replace("id: nudge\n", "id: nudge\naudience: {segments: [tech_touch]}\n")
    project = make({"nudge": narrow}, accounts_csv=INACTIVE, database=db_url)
    project.run(T0)
    project.set_accounts(INACTIVE.replace(",5000,", ",250000,"))  # now high touch
    project.run(T0 + timedelta(days=1))
    assert exits(project) == ["left the audience (segment high_touch)"]
    assert project.emails() == ["login_nudge.html.j2"]


def test_a_webhook_queued_by_an_enrollment_that_exited_is_not_posted(make: Any, db_url: str) -> None:
    hook = NUDGE.replace("  - email: {template: login_nudge, to: admin}\n",
                         f"  - webhook: {{url: \"http://127.0.0.1:{free_port()}/hook\", body: {{a: 1}}}}\n")
    project = make({"nudge": hook}, accounts_csv=INACTIVE, database=db_url, webhooks={"allow_private": True})
    project.run(T0)  # the receiver is down: the webhook waits for a retry
    assert [r.state for r in project.rows(webhook_table)] == ["queued"]
    project.set_accounts(INACTIVE.replace("2026-02-01T09:00:00Z", "2026-03-03T10:00:00Z"))
    project.run(T0 + timedelta(days=1))
    (row,) = project.rows(webhook_table)
    assert (row.state, row.last_error, row.attempts) == ("skipped", "enrollment_exited", 1)
