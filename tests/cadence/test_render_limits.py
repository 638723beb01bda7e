"""A render that runs past limits.render_seconds fails that account's email step, visibly, and the
other accounts of the same run get theirs (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from playbookd import runtime
from playbookd.store.schema import enrollments, outbox

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,loops\n"
            "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example,3\n"
            "ACC-2,Quay Foods,5000,active,basic,adopted,maria@acme.example,100000\n"
            "ACC-3,Pier Foods,5000,active,basic,adopted,maria@acme.example,4\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,true\n"
            "ACC-2,bo@quay.example,Bo,admin,active,true\n"
            "ACC-3,cy@pier.example,Cy,admin,active,true\n")
LOOPS = ('---\nsubject: "Hello"\n---\n{% extends "_layouts/base.html.j2" %}\n{% block body %}'
         "{% for i in range(account.loops or 0) %}{% for j in range(account.loops or 0) %}{% endfor %}{% endfor %}"
         "<p>done</p>{% endblock %}\n")
PLAYBOOK = "id: loops\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: loops, to: admin}\n"


def test_a_runaway_render_fails_its_account_and_the_rest_are_sent(make: Any, db_url: str) -> None:
    project = make({}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url, limits={"render_seconds": 4},
                   custom_fields={"loops": "integer"})
    (project.path / "email_templates" / "default" / "loops.html.j2").write_text(LOOPS)
    (project.path / "playbooks" / "loops.yaml").write_text(PLAYBOOK)
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    report = project.run(T0)
    states = {r.account_id: (r.state, r.reason) for r in project.rows(enrollments)}
    assert states["ACC-1"][0] == states["ACC-3"][0] == "completed"
    state, reason = states["ACC-2"]
    assert state == "failed"
    assert "default/loops.html.j2" in reason and "for account ACC-2" in reason
    assert "limits.render_seconds (4 s)" in reason
    assert sorted(r.account_id for r in project.rows(outbox)) == ["ACC-1", "ACC-3"]
    assert report.failed_steps == 1 and not report.ok


def test_a_nul_in_data_is_dropped_from_the_email_so_it_is_queued_and_sent(make: Any, db_url: str) -> None:
    """PostgreSQL refuses a NUL in text: one account's name holding one would fail every batch it is in."""
    hostile = ACCOUNTS.replace("Quay Foods", "Quay\x00Foods")
    project = make({}, accounts_csv=hostile, contacts_csv=CONTACTS, database=db_url)
    (project.path / "email_templates" / "default" / "named.html.j2").write_text(
        '---\nsubject: "For {{ account.name }}"\n---\n{% extends "_layouts/base.html.j2" %}\n'
        "{% block body %}<p>News for {{ account.name }} and {{ account.name | upper }}</p>{% endblock %}\n")
    (project.path / "playbooks" / "named.yaml").write_text(PLAYBOOK.replace("loops", "named"))
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    report = project.run(T0)
    assert report.ok and report.failed_steps == 0
    assert {r.account_id: r.state for r in project.rows(enrollments)} == dict.fromkeys(("ACC-1", "ACC-2", "ACC-3"),
                                                                                      "completed")
    (queued,) = project.rows(outbox, outbox.c.account_id == "ACC-2")
    assert "News for QuayFoods and QUAYFOODS" in queued.html and "QuayFoods" in queued.text
    assert "\x00" not in queued.html + queued.text + queued.subject
