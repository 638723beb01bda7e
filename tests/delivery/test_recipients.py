"""Suppression matches the canonical address at evaluation and at send time, however a source or an
operator spells it; on a SQLite file and on PostgreSQL, through full cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cycle_helpers import ACCOUNTS
from sqlalchemy import func, select

from playbookd.cli import actions
from playbookd.delivery.unsubscribe import sign, verify
from playbookd.errors import UserError
from playbookd.store.schema import audit, outbox, suppressions

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"


def project_with(make: Any, db_url: str, email: str, **config: Any) -> Any:
    contacts = f"account_id,email,first_name,role,status,is_primary\nACC-1,{email},Ana,admin,active,true\n"
    return make({"hello": HELLO}, accounts_csv=ACCOUNTS, contacts_csv=contacts, database=db_url, **config)


def skips(project: Any) -> list[str]:
    return [r.reason for r in project.rows(audit, audit.c.event == "step_skipped")]


@pytest.mark.parametrize("spelled", ["a(x)@example.com", '"""a""@Example.com"', "A@EXAMPLE.COM"])
def test_a_suppressed_mailbox_gets_nothing_however_the_source_spells_it(make: Any, db_url: str, spelled: str) -> None:
    project = project_with(make, db_url, spelled)
    actions.suppress_add(project.engine, "a@example.com", "*", "asked by phone")
    project.run(T0)
    assert project.rows(outbox) == []
    assert "manual" in skips(project)


def test_a_suppression_spelled_otherwise_holds_at_send_time(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, "a@bücher.example",
                           delivery={"quiet_hours": {"start": "14:00", "end": "20:00"}})
    project.run(T0)  # queued, held by quiet hours
    (row,) = project.rows(outbox)
    assert (row.state, row.to_addr) == ("queued", "a@xn--bcher-kva.example")
    assert actions.suppress_add(project.engine, "A(note)@BÜCHER.example", "*", None) == \
        "suppressed a@xn--bcher-kva.example (*)"
    project.run(T0 + timedelta(hours=6))
    (row,) = project.rows(outbox)
    assert (row.state, row.last_error) == ("skipped", "manual")


def test_suppress_add_refuses_what_is_not_a_mailbox(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, "a@example.com")
    with pytest.raises(UserError) as caught:
        actions.suppress_add(project.engine, "Ana <a@example.com>", "*", None)
    assert str(caught.value).startswith("'Ana <a@example.com>' is not a deliverable address: give the address alone")
    with project.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() == 0
    actions.suppress_add(project.engine, "a@example.com", "*", None)
    assert actions.suppress_remove(project.engine, '"a"@example.com', "*") == "removed suppression of a@example.com (*)"


def test_an_unsubscribe_token_names_the_canonical_address() -> None:
    token = sign(b"k" * 32, '"A"(x)@Bücher.example', "product_tips")
    assert verify(b"k" * 32, token) == ("a@xn--bcher-kva.example", "product_tips")
