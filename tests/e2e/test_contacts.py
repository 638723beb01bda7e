"""Contacts in conditions, recipient filters and templates, end to end through full cycles (sync,
the rules engine in its worker processes, cadences, delivery) on SQLite and PostgreSQL."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

from sqlalchemy import select

from playbookd import runtime
from playbookd.engine.goal_overlap import goal_overlaps
from playbookd.store.schema import audit, contacts, enrollments, fields

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNTS = ("id,name,annual_revenue,status,plan,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,maria@acme.example\n"
            "ACC-2,Pine Labs,5000,active,basic,maria@acme.example\n"
            "ACC-3,Crowd Co,5000,active,basic,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,last_login_at,invited_at,seats\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,2026-02-01T10:00:00Z,2025-11-03,4\n"
            "ACC-1,bill@harbor.example,Bill,billing,active,,2025-11-04,\n"
            "ACC-2,pia@pine.example,Pia,admin,active,2026-03-01T10:00:00Z,2025-12-01,2\n"
            "ACC-2,ben@pine.example,Ben,billing,left,,,\n"
            "ACC-3,a@crowd.example,A,admin,active,2026-01-01T10:00:00Z,,\n"
            "ACC-3,b@crowd.example,B,user,active,,,\n"
            "ACC-3,c@crowd.example,C,user,active,,,\n")
TEMPLATE = """---
subject: 'Hello {{ contact.first_name or "there" }}'
---
{% extends "_layouts/base.html.j2" %}
{% block body %}
<p>{% if contact.invited_at %}Invited on {{ contact.invited_at | date }}{% endif %}
{%- if contact.seats %}, {{ contact.seats + 1 }} seats with you{% endif %};
last seen {{ contact.last_login_at | date("%Y-%m-%d") or "never" }}.</p>
{% endblock %}
"""
TYPES = {"last_login_at": "datetime", "invited_at": "date", "seats": "integer"}


def sources(types: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": "crm_accounts", "kind": "csv", "entity": "accounts", "path": "data/accounts.csv",
             "fields": {"arr": "annual_revenue"}},
            {"name": "crm_contacts", "kind": "csv", "entity": "contacts", "path": "data/contacts.csv", "types": types}]


def build(make: Any, db_url: str, playbooks: dict[str, str], templates: dict[str, str] | None = None,
          types: dict[str, str] = TYPES) -> Any:
    """A project whose playbooks and templates are written before its runtime is loaded; the contact
    source declares its columns' types, so validate renders `contact.invited_at` as a date before any sync."""
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url, sources=sources(types))
    for name, text in (templates or {}).items():
        (project.path / "email_templates" / "default" / f"{name}.html.j2").write_text(text)
    for name, text in playbooks.items():
        (project.path / "playbooks" / f"{name}.yaml").write_text(text)
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    return project


def entered(project: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in project.rows(enrollments):
        found.setdefault(row.playbook_id, []).append(row.account_id)
    return found


def sent(project: Any) -> dict[str, email.message.EmailMessage]:
    messages = [email.message_from_bytes(f.read_bytes(), policy=policy.default)
                for f in sorted((project.path / "outbox").glob("*.eml"))]
    return {str(m["To"]): m for m in messages}  # type: ignore[misc]


TASK = "steps:\n  - task: {title: look, assign: csm}\n"
CONDITIONS = {
    "has-billing": "trigger: {when: {contacts: {any: {role: billing, status: active}}}}\n"
                   "exit_when: {contacts: {none: {role: billing, status: active}}}\n"
                   "steps:\n  - wait: 2d\n  - task: {title: look, assign: csm}\n",
    "no-billing": "trigger: {when: {contacts: {none: {role: billing, status: active}}}}\n" + TASK,
    "crowd": "trigger: {when: {contacts: {count: {gte: 3}, where: {status: active}}}}\n" + TASK,
    "stale-admin": "trigger:\n  when:\n    contacts:\n      any: {role: admin, last_login_at: {older_than: 14d}}\n"
                   + TASK,
}


def test_account_conditions_test_the_contacts_in_the_rules_engine(make: Any, db_url: str) -> None:
    project = build(make, db_url, CONDITIONS)
    project.run(T0)
    assert entered(project) == {"has-billing": ["ACC-1"], "no-billing": ["ACC-2", "ACC-3"], "crowd": ["ACC-3"],
                                "stale-admin": ["ACC-1", "ACC-3"]}
    assert project.rows(audit, audit.c.event == "evaluation_failed") == []
    # the billing contact leaves: exit_when, which tests contacts too, ends the enrollment before its task
    (project.path / "data" / "contacts.csv").write_text(CONTACTS.replace("billing,active", "billing,left"))
    project.run(T0 + timedelta(days=3))
    (row,) = project.rows(enrollments, enrollments.c.playbook_id == "has-billing")
    assert (row.state, row.reason) == ("exited", "exit_when matched")


FILTERED = """\
id: stale-admins
trigger: {when: {status: active}}
steps:
  - email: {template: hello, to: {role: admin, where: {last_login_at: {older_than: 7d}}}}
"""


def test_recipients_are_filtered_and_every_contact_column_is_typed_in_templates(make: Any, db_url: str) -> None:
    project = build(make, db_url, {"stale-admins": FILTERED}, {"hello": TEMPLATE})
    project.run(T0)
    messages = sent(project)
    assert sorted(messages) == ["a@crowd.example", "ana@harbor.example"]  # ACC-2's admin came yesterday
    body = messages["ana@harbor.example"].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Invited on November 3, 2025, 5 seats with you;" in body and "last seen 2026-02-01" in body
    skipped = project.rows(audit, audit.c.event == "step_skipped", audit.c.account_id == "ACC-2")
    assert [r.reason for r in skipped] == ["no_recipient"]
    with project.engine.connect() as conn:
        types = dict(conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "contacts")).all())
    assert types == TYPES


def test_validate_knows_contact_columns_and_their_types(make: Any, db_url: str) -> None:
    project = build(make, db_url, {})
    playbook = project.path / "playbooks" / "stale-admins.yaml"
    playbook.write_text(FILTERED.replace("last_login_at", "last_logn_at"))
    problems = runtime.build(project.config, project.engine)[1]
    assert any(p.line == 4 and "unknown field 'last_logn_at'" in p.message and "last_login_at" in p.message
               for p in problems), problems
    playbook.write_text(FILTERED.replace("older_than: 7d", "gt: 3"))
    problems = runtime.build(project.config, project.engine)[1]
    assert any(p.line == 4 and "last_login_at gt" in p.message and "expected an ISO 8601 datetime" in p.message
               for p in problems), problems
    # an unguarded optional contact column fails validate, not a send
    (project.path / "email_templates" / "default" / "hello.html.j2").write_text(
        TEMPLATE.replace("{%- if contact.seats %}", "{%- if true %}"))
    playbook.write_text(FILTERED)
    problems = runtime.build(project.config, project.engine)[1]
    assert any(p.file.endswith("hello.html.j2") and p.line == 7 and "without its optional fields" in p.message
               for p in problems), problems


def test_inferred_contact_columns_widen_to_text_and_stored_values_are_restated(make: Any, db_url: str) -> None:
    project = build(make, db_url, {}, types={"seats": "decimal"})
    project.run(T0)
    (project.path / "data" / "contacts.csv").write_text(CONTACTS.replace("2025-11-03", "soon"))
    project.run(T0 + timedelta(hours=1))
    with project.engine.connect() as conn:
        types = dict(conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "contacts")).all())
        data = {r.email: r.data for r in conn.execute(select(contacts.c.email, contacts.c.data))}
    assert types == {"seats": "decimal", "invited_at": "string", "last_login_at": "datetime"}
    assert data["pia@pine.example"]["invited_at"] == "2025-12-01" and data["pia@pine.example"]["seats"] == 2


GOAL = """\
trigger: {when: {status: active}}
goal:
  when: {contacts: {any: {role: billing, status: active}}}
  within: 30d
steps:
  - wait: 2d
  - task: {title: look, assign: csm}
"""


def test_a_goal_and_the_goal_overlap_check_test_contacts(make: Any, db_url: str) -> None:
    project = build(make, db_url, {"billing-goal": GOAL})
    project.run(T0)
    rows = {r.account_id: r for r in project.rows(enrollments)}
    assert {a: bool(r.goal_at_entry) for a, r in rows.items()} == {"ACC-1": True, "ACC-2": False, "ACC-3": False}
    (problem,) = goal_overlaps(project.runtime, project.engine, T0)  # ACC-1 matches trigger and goal together
    assert "1 synced account(s)" in problem.message and "ACC-1" in problem.message
    # Pine Labs' billing contact comes back: the goal is met at the next evaluation and ends the enrollment
    (project.path / "data" / "contacts.csv").write_text(CONTACTS.replace("Ben,billing,left", "Ben,billing,active"))
    project.run(T0 + timedelta(days=1))
    rows = {r.account_id: r for r in project.rows(enrollments)}
    assert rows["ACC-2"].goal_met_at is not None and rows["ACC-2"].state == "exited"
    assert rows["ACC-3"].goal_met_at is None and rows["ACC-3"].state == "active"


def test_a_step_when_cannot_test_contacts(make: Any, db_url: str) -> None:
    step_when = ("trigger: {when: {status: active}}\nsteps:\n  - task: {title: look, assign: csm}\n"
                 "    when: {contacts: {any: {role: billing}}}\n")
    project = build(make, db_url, {})
    (project.path / "playbooks" / "step-when.yaml").write_text(step_when)
    problems = runtime.build(project.config, project.engine)[1]
    assert any(p.line == 4 and "'contacts' conditions work on an account's conditions" in p.message
               for p in problems), problems
