"""On SQLite, advance renders each batch's emails before its write transaction, then reads the
enrollments, accounts, contacts and suppressions again inside it: an email rendered first is taken
only when it renders from the same values, an address unsubscribed in between is never sent to, and
a changed account or contact gets its email rendered again from what the transaction read. What
commits in between is written by another connection at the moment the first renders end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from playbookd import runtime
from playbookd.cadence import advance
from playbookd.service.http_app import unsubscribe
from playbookd.store.accounts import set_fields
from playbookd.store.database import transaction
from playbookd.store.schema import audit, contacts, outbox

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PLAYBOOK = "id: greet\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: greeting, to: admin}\n"
GREETING = ('---\nsubject: "Hello {{ contact.first_name or \'there\' }}"\n---\n{% extends "_layouts/base.html.j2" %}\n'
            "{% block body %}<p>Hi {{ contact.first_name or 'there' }}, you are on {{ account.plan or 'a plan' }}.</p>"
            "{% endblock %}\n")


def _project(make: Any, tmp_path: Path) -> Any:
    project = make({}, database=f"sqlite:///{tmp_path}/store.db")
    (project.path / "email_templates" / "default" / "greeting.html.j2").write_text(GREETING)
    (project.path / "playbooks" / "greet.yaml").write_text(PLAYBOOK)
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    return project


def _between(monkeypatch: pytest.MonkeyPatch, project: Any, change: Callable[[], None]) -> list[int]:
    """`change` committed once the first renders of a batch end, before its transaction; returns how
    many emails each call of render_many was given (the first renders, then the transaction's)."""
    calls: list[int] = []
    templates = project.runtime.templates
    render_many = templates.render_many

    def counted(jobs: Sequence[Any]) -> Any:
        calls.append(len(jobs))
        return render_many(jobs)

    monkeypatch.setattr(templates, "render_many", counted)
    render_early = advance.render_early

    def then_change(runtime: Any, planned: Any) -> Any:
        done = render_early(runtime, planned)
        change()
        return done

    monkeypatch.setattr(advance, "render_early", then_change)
    return calls


def _set_contact(project: Any, **values: Any) -> None:
    with transaction(project.engine) as conn:
        conn.execute(update(contacts).where(contacts.c.email == "ana@harbor.example").values(**values))


def test_an_email_rendered_first_is_taken_when_nothing_changed(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(make, tmp_path)
    calls = _between(monkeypatch, project, lambda: None)
    project.run(T0)
    assert calls == [1]  # rendered once, before the transaction
    [row] = project.rows(outbox)
    assert row.to_addr == "ana@harbor.example" and "Hi Ana, you are on basic." in row.html


@pytest.mark.parametrize("category", ["*", "general"])
def test_an_unsubscribe_between_the_first_render_and_the_transaction_stops_the_email(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, category: str) -> None:
    project = _project(make, tmp_path)
    calls = _between(monkeypatch, project, lambda: unsubscribe(project.engine, "ana@harbor.example", category,
                                                               "link"))
    project.run(T0)
    assert calls == [1]  # it was rendered first, for the address then not unsubscribed
    assert project.rows(outbox) == []
    reasons = [r.reason for r in project.rows(audit, audit.c.playbook_id == "greet", audit.c.event == "step_skipped")]
    assert "unsubscribed" in reasons


def test_a_contact_unsubscribed_in_the_contacts_between_the_phases_is_not_sent_to(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(make, tmp_path)
    _between(monkeypatch, project, lambda: _set_contact(project, status="unsubscribed"))
    project.run(T0)
    assert project.rows(outbox) == []


def test_an_account_changed_between_the_phases_gets_the_email_rendered_from_the_new_one(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(make, tmp_path)

    def gold() -> None:
        with transaction(project.engine) as conn:
            set_fields(conn, "ACC-1", {"plan": "gold"}, T0)

    calls = _between(monkeypatch, project, gold)
    project.run(T0)
    assert calls == [1, 1]  # rendered first from `basic`, then again in the transaction
    [row] = project.rows(outbox)
    assert "you are on gold." in row.html


def test_a_contact_renamed_between_the_phases_gets_the_email_rendered_with_the_new_name(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(make, tmp_path)
    calls = _between(monkeypatch, project, lambda: _set_contact(project, first_name="Anna"))
    project.run(T0)
    assert calls == [1, 1]
    [row] = project.rows(outbox)
    assert row.subject == "Hello Anna" and "Hi Anna," in row.html
