"""On SQLite, advance renders each batch's emails before its write transaction, then reads the
enrollments, accounts, contacts and suppressions again inside it: an email rendered first is taken
only when it renders from the same values, an address unsubscribed in between is never sent to, and
a changed account or contact gets its email rendered again from what the transaction read. What
commits in between is written by another connection at the moment the first renders end."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import event, func, update

from playbookd import runtime
from playbookd.cadence import advance, batch
from playbookd.cadence.context import Ahead, Batch, Early, StepContext, same
from playbookd.delivery.recipients import Contact
from playbookd.service.http_app import unsubscribe
from playbookd.store.accounts import set_fields
from playbookd.store.database import transaction
from playbookd.store.schema import accounts, audit, contacts, outbox
from playbookd.templates.compiled import Rendered

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


SEATS = ('---\nsubject: "Seats"\n---\n{% extends "_layouts/base.html.j2" %}\n'
         "{% block body %}<p>Seats: {{ account.seats or \"none\" }}.</p>{% endblock %}\n")


@pytest.mark.parametrize(("before", "after", "shown"), [("1", 1.0, "Seats: 1.0."), ("1", True, "Seats: True."),
                                                          ("true", 1, "Seats: 1.")])
def test_an_account_changed_only_in_a_value_s_type_between_the_phases_gets_the_email_rendered_again(
        make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: str, after: Any, shown: str) -> None:
    """1 == 1.0 == True, but a template prints `1`, `1.0` and `True`: equal is not the same email."""
    csv = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,seats\n"
           f"ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example,{before}\n")
    project = make({}, database=f"sqlite:///{tmp_path}/store.db", accounts_csv=csv)
    (project.path / "email_templates" / "default" / "greeting.html.j2").write_text(SEATS)
    (project.path / "playbooks" / "greet.yaml").write_text(PLAYBOOK)
    project.runtime = runtime.load(engine=project.engine, config=project.config)

    def seats() -> None:
        with transaction(project.engine) as conn:
            conn.execute(update(accounts).where(accounts.c.id == "ACC-1").values(
                data=func.json_set(accounts.c.data, "$.seats", func.json(json.dumps(after)))))

    calls = _between(monkeypatch, project, seats)
    project.run(T0)
    assert calls == [1, 1]
    [row] = project.rows(outbox)
    assert shown in row.html


def test_a_batch_takes_an_email_rendered_ahead_only_for_an_account_the_same_in_every_type() -> None:
    rendered = Rendered("default/greeting.html.j2", "Hi", None, "<p>Hi</p>", "Hi\n")
    for other in ({"id": "A", "seats": 1.0}, {"id": "A", "seats": True}, {"id": "A", "seats": "1"}):
        batch = Batch(ahead={(1, 0, 7): Ahead("u", {"id": "A", "seats": 1}, rendered)})
        assert batch.take(1, 0, 7, other) is None
    batch = Batch(ahead={(1, 0, 7): Ahead("u", {"id": "A", "seats": 1}, rendered)})
    assert batch.take(1, 0, 7, {"id": "A", "seats": 1}) == ("u", rendered)


@pytest.mark.parametrize(("a", "b"), [(1, 1.0), (True, 1), ({"x": [1]}, {"x": [1.0]}),
                                      (Decimal("1.0"), Decimal("1.00")),
                                      (datetime(2026, 1, 1, 12, tzinfo=UTC),
                                       datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))),
                                      (0.0, -0.0), ((1, "a"), (1.0, "a"))])
def test_values_equal_but_printed_otherwise_are_not_the_same(a: Any, b: Any) -> None:
    assert a == b and not same(a, b)
    assert same(a, a) and same({"k": [a, None]}, {"k": [a, None]})


def test_the_secret_the_first_renders_use_is_read_without_a_write_transaction_once_kept(
        make: Any, tmp_path: Path) -> None:
    """Only the cycle that makes the secret takes the write lock for it; later ones read it."""
    project = _project(make, tmp_path)
    begun: list[str] = []
    event.listen(project.engine, "before_cursor_execute",
           lambda conn, cursor, statement, *rest: begun.append(statement) if "BEGIN" in statement else None)
    made = advance._secret_first(project.runtime, project.engine)
    assert made is not None and begun == ["BEGIN IMMEDIATE"]
    begun.clear()
    assert advance._secret_first(project.runtime, project.engine) == made
    assert begun == []


def test_a_copy_of_a_record_is_the_same_and_one_changed_in_a_value_or_its_order_is_judged_value_by_value() -> None:
    record = {"id": "A", "seats": 1, "plan": "gold", "nan": float("nan")}
    assert same(record, dict(record))  # the very same values: a NaN is the same as itself
    assert same(record, dict(reversed(record.items())))  # another order, the same values
    assert not same(record, {**record, "seats": True})
    assert not same(record, {**record, "nan": float("nan")})  # another NaN: not equal
    assert not same(record, {k: v for k, v in record.items() if k != "plan"})


def _wanted(account: dict[str, Any], contact: dict[str, Any], event: dict[str, Any] | None = None,
            secret: bytes = b"s", stand: tuple[Any, ...] = (0, "a", "treatment", None),
            template: str = "greeting") -> batch.Wanted:
    enrollment = SimpleNamespace(id=1)
    ctx = StepContext(cast(Any, None), cast(Any, None), cast(Any, enrollment), cast(Any, None), account, T0,
                      secret, event)
    person = Contact(7, "A", contact["email"], contact.get("first_name"), None, "admin", None, "active", True, 0,
                     fields=contact)
    return batch.Wanted((1, 0, 7), ctx, person, template, stand)


def test_an_email_rendered_first_is_taken_only_if_everything_its_job_is_built_from_is_the_same() -> None:
    """The transaction compares what the job was built from instead of building it again."""
    rendered = Rendered("default/greeting.html.j2", "Hi", None, "<p>Hi</p>", "Hi\n")
    account = {"id": "A", "segment": "smb", "seats": 1}
    contact = {"email": "ana@harbor.example", "first_name": "Ana"}
    early = Early((0, "a", "treatment", None), "greeting", b"s", dict(account), dict(contact), None, "u", rendered)
    assert batch._unchanged(early, _wanted(dict(account), dict(contact)))
    for changed in (_wanted({**account, "seats": 1.0}, contact), _wanted({**account, "seats": 2}, contact),
                    _wanted(account, {**contact, "first_name": "Anna"}), _wanted(account, contact, event={}),
                    _wanted(account, contact, secret=b"t"), _wanted(account, contact, template="other"),
                    _wanted(account, contact, stand=(1, "a", "treatment", None))):
        assert not batch._unchanged(early, changed)
