"""The enrollments of one advance transaction write their outbox rows and their moves to a later
step together: an email step that fails on one contact leaves nothing of it behind while the other
accounts' emails are queued, a `when:` right after an email sees that email, and an email after a
`set` shows the value just set (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from playbookd import runtime
from playbookd.cadence.context import Ahead, Batch
from playbookd.store.schema import audit, enrollments, outbox, tasks
from playbookd.templates.compiled import Rendered

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example\n"
            "ACC-2,Quay Foods,5000,active,basic,adopted,maria@acme.example\n"
            "ACC-3,Pier Foods,5000,active,basic,adopted,maria@acme.example\n")
# ACC-2's second admin's first name is one letter, which the template divides by its length less one:
# that email cannot render, and the render check of `validate` does not see it
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,true\n"
            "ACC-2,bo@quay.example,Bo,admin,active,true\n"
            "ACC-2,zed@quay.example,Z,admin,active,false\n"
            "ACC-3,cy@pier.example,Cy,admin,active,true\n")
GREETING = ('---\nsubject: "Hello {{ contact.first_name or \'there\' }}"\n---\n{% extends "_layouts/base.html.j2" %}\n'
            "{% block body %}<p>Hi {{ contact.first_name or 'there' }}, you are on {{ account.plan or 'a plan' }}. "
            "{{ 12 // (((contact.first_name or 'xy') | length) - 1) }}</p>{% endblock %}\n")


def _project(make: Any, db_url: str, playbook: str) -> Any:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url)
    (project.path / "email_templates" / "default" / "greeting.html.j2").write_text(GREETING)
    (project.path / "playbooks" / "greet.yaml").write_text(playbook)
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    return project


def test_a_failed_email_fails_its_enrollment_alone_and_leaves_nothing_queued(make: Any, db_url: str) -> None:
    project = _project(make, db_url, "id: greet\ntrigger: {when: {status: active}}\nsteps:\n"
                                     "  - email: {template: greeting, to: admin}\n  - wait: 3d\n"
                                     "  - email: {template: greeting, to: admin}\n")
    report = project.run(T0)
    assert report.failed_steps == 1
    states = {r.account_id: (r.state, r.step, r.next_due_at is not None, r.reason) for r in project.rows(enrollments)}
    assert states["ACC-1"][:3] == states["ACC-3"][:3] == ("active", 2, True)
    state, step, _, reason = states["ACC-2"]
    assert (state, step) == ("failed", 0)
    assert "default/greeting.html.j2:5: ZeroDivisionError" in reason
    # bo@quay's email rendered, but the step failed on zed@quay's: neither is queued
    assert sorted(r.to_addr for r in project.rows(outbox)) == ["ana@harbor.example", "cy@pier.example"]
    events = {}
    for row in project.rows(audit, audit.c.playbook_id == "greet", audit.c.event != "sent"):  # sent: delivery
        events.setdefault(row.account_id, []).append(row.event)
    assert events["ACC-2"] == ["entered", "step_failed"]
    assert events["ACC-1"] == events["ACC-3"] == ["entered", "queued", "step_done"]


def test_a_when_right_after_an_email_counts_it(make: Any, db_url: str) -> None:
    playbook = ("id: greet\ntrigger: {when: {status: active}}\nsteps:\n"
                "  - email: {template: greeting, to: primary}\n"
                "  - task: {title: 'emailed once', assign: csm}\n    when: {enrollment.emails_sent: 1}\n"
                "  - task: {title: 'not emailed', assign: csm}\n    when: {enrollment.emails_sent: 0}\n")
    project = _project(make, db_url, playbook)
    project.run(T0)
    assert sorted((r.account_id, r.title) for r in project.rows(tasks)) == [
        ("ACC-1", "emailed once"), ("ACC-2", "emailed once"), ("ACC-3", "emailed once")]


def test_an_email_after_a_set_shows_the_value_set(make: Any, db_url: str) -> None:
    playbook = ("id: greet\ntrigger: {when: {status: active}}\nsteps:\n"
                "  - set: {plan: gold}\n  - email: {template: greeting, to: primary}\n  - wait: 1d\n")
    project = _project(make, db_url, playbook)
    project.run(T0)
    queued = project.rows(outbox)
    assert len(queued) == 3 and all("you are on gold." in r.html for r in queued)
    assert project.run(T0 + timedelta(hours=1)).failed_steps == 0  # nothing due, nothing queued again
    assert len(project.rows(outbox)) == 3


def test_an_email_rendered_ahead_is_used_only_for_its_step_contact_and_account() -> None:
    rendered = Rendered("default/greeting.html.j2", "Hello", None, "<p>Hi</p>", "Hi")
    batch = Batch()
    for key in ((1, 0, 7), (1, 0, 8), (2, 0, 7)):
        batch.ahead[key] = Ahead("http://u/1", {"id": "ACC-1", "plan": "basic"}, rendered)
    assert batch.take(1, 0, 7, {"id": "ACC-1", "plan": "basic"}) == ("http://u/1", rendered)
    assert batch.take(1, 0, 7, {"id": "ACC-1", "plan": "basic"}) is None  # taken once
    assert batch.take(1, 1, 8, {"id": "ACC-1", "plan": "basic"}) is None  # another step
    assert batch.take(2, 0, 7, {"id": "ACC-1", "plan": "gold"}) is None  # the account changed since


def test_a_set_in_one_batch_shows_in_the_email_of_the_next_rendered_while_it_ran(make: Any, db_url: str) -> None:
    """Two enrollments of one account go to consecutive batches; the second batch's emails are read
    and rendered while the first one runs (on SQLite), before its `set` commits: the second batch's
    transaction reads the account again and renders the email from the value set."""
    project = _project(make, db_url, "id: greet\ntrigger: {when: {status: active}}\nsteps:\n"
                                     "  - email: {template: greeting, to: primary}\n  - wait: 1d\n")
    (project.path / "playbooks" / "able.yaml").write_text(
        "id: able\ntrigger: {when: {status: active}}\nsteps:\n  - set: {plan: gold}\n")
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    project.run(T0)
    first = {r.playbook_id: r.id for r in project.rows(enrollments, enrollments.c.account_id == "ACC-1")}
    assert first["able"] < first["greet"]  # so the set runs in the batch before the email's
    [email] = project.rows(outbox, outbox.c.account_id == "ACC-1")
    assert "you are on gold." in email.html
