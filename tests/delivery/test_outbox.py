"""Delivery rules across playbooks: frequency cap with priorities, operational mail, quiet hours,
suppression at send time; on a SQLite file and on PostgreSQL, through full cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cycle_helpers import ACCOUNTS
from smtp_server import SmtpServer
from sqlalchemy import func, select, update

from playbookd.cli import actions
from playbookd.store.schema import audit, outbox, suppressions
from playbookd.store.schema import contacts as contacts_table

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday; 00:00 on Thursday in Tokyo
CONTACTS_TOKYO = ("account_id,email,first_name,role,status,is_primary,timezone\n"
                  "ACC-1,ana@harbor.example,Ana,admin,active,true,Asia/Tokyo\n")


def playbook(name: str, priority: int, category: str = "product_tips") -> str:
    return (f"id: {name}\ncategory: {category}\npriority: {priority}\ntrigger: {{when: {{status: active}}}}\n"
            f"steps:\n  - email: {{template: login_nudge, to: admin}}\n")


def states(project: Any) -> dict[str, str]:
    return {r.playbook_id: r.state for r in project.rows(outbox)}


def reasons(project: Any, event: str) -> list[tuple[str, str]]:
    return [(r.playbook_id, r.reason) for r in project.rows(audit, audit.c.event == event)]


def capped(make: Any, db_url: str, max_wait: str = "10d", low_category: str = "product_tips") -> Any:
    return make({"high": playbook("high", 10), "low": playbook("low", 1, low_category)}, database=db_url,
                delivery={"frequency_cap": {"max": 1, "per": "7d", "max_wait": max_wait}})


def test_cap_lets_the_higher_priority_mail_through_and_holds_the_rest(make: Any, db_url: str) -> None:
    project = capped(make, db_url)
    project.run(T0)
    assert states(project) == {"high": "sent", "low": "queued"}
    (low,) = [r for r in project.rows(outbox) if r.playbook_id == "low"]
    assert low.not_before.replace(tzinfo=UTC) == T0 + timedelta(days=7)
    assert reasons(project, "deferred") == [("low", "frequency_cap")]
    project.run(T0 + timedelta(days=6, hours=23))
    assert states(project)["low"] == "queued"
    project.run(T0 + timedelta(days=7))
    assert states(project) == {"high": "sent", "low": "sent"}


def test_operational_mail_is_not_capped(make: Any, db_url: str) -> None:
    project = capped(make, db_url, low_category="operational")
    project.run(T0)
    assert states(project) == {"high": "sent", "low": "sent"}


def test_mail_the_cap_would_hold_past_its_deadline_is_skipped(make: Any, db_url: str) -> None:
    project = capped(make, db_url, max_wait="3d")
    project.run(T0)
    assert states(project) == {"high": "sent", "low": "skipped"}
    assert reasons(project, "step_skipped") == [("low", "frequency_cap_deadline")]


def quiet(make: Any, db_url: str, weekends: bool = False) -> Any:
    return make({"hello": playbook("hello", 0)}, contacts_csv=CONTACTS_TOKYO, database=db_url,
                delivery={"quiet_hours": {"start": "20:00", "end": "08:00", "weekends": weekends}})


def test_quiet_hours_hold_mail_until_the_contacts_morning(make: Any, db_url: str) -> None:
    project = quiet(make, db_url)
    project.run(T0)
    (row,) = project.rows(outbox)
    assert row.state == "queued"
    assert row.not_before.replace(tzinfo=UTC) == T0 + timedelta(hours=8)  # 08:00 in Tokyo
    assert reasons(project, "deferred") == [("hello", "quiet_hours")]
    project.run(T0 + timedelta(hours=7, minutes=59))
    assert states(project) == {"hello": "queued"}
    project.run(T0 + timedelta(hours=8))
    assert states(project) == {"hello": "sent"}


def test_weekend_quiet_hours_wait_for_monday(make: Any, db_url: str) -> None:
    project = quiet(make, db_url, weekends=True)
    saturday_noon_tokyo = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)
    project.run(saturday_noon_tokyo)
    (row,) = project.rows(outbox)
    assert row.not_before.replace(tzinfo=UTC) == datetime(2026, 3, 8, 23, 0, tzinfo=UTC)  # Monday 08:00


def test_an_address_suppressed_after_queueing_gets_nothing(make: Any, db_url: str) -> None:
    project = quiet(make, db_url)
    project.run(T0)  # queued for the morning
    actions.suppress_add(project.engine, "Ana@Harbor.example", "product_tips", "asked by phone")
    project.run(T0 + timedelta(hours=9))
    assert states(project) == {"hello": "skipped"}
    assert reasons(project, "step_skipped") == [("hello", "manual")]  # the suppression's own reason


def test_unsubscribing_from_another_category_does_not_stop_this_one(make: Any, db_url: str) -> None:
    project = quiet(make, db_url)
    project.run(T0)
    actions.suppress_add(project.engine, "ana@harbor.example", "renewals", None)
    project.run(T0 + timedelta(hours=9))
    assert states(project) == {"hello": "sent"}


def test_no_two_playbooks_send_to_one_contact_in_one_batch_past_the_cap(make: Any, db_url: str) -> None:
    accounts = ACCOUNTS + "ACC-2,Orbit Labs,7000,active,basic,adopted,maria@acme.example\n"
    contacts = ("account_id,email,first_name,role,status,is_primary\n"
                "ACC-1,ana@harbor.example,Ana,admin,active,true\n"
                "ACC-2,ana@harbor.example,Ana,admin,active,true\n")  # one person, admin of two accounts
    project = make({"hello": playbook("hello", 0)}, accounts_csv=accounts, contacts_csv=contacts, database=db_url,
                   delivery={"frequency_cap": {"max": 1, "per": "1d"}})
    project.run(T0)
    assert sorted(r.state for r in project.rows(outbox)) == ["queued", "sent"]


def test_a_message_that_cannot_be_built_fails_alone(make: Any, db_url: str) -> None:
    accounts = (ACCOUNTS + "ACC-2,Bay Line,5000,active,basic,adopted,maria@acme.example\n"
                "ACC-3,Cove Co,5000,active,basic,adopted,maria@acme.example\n")
    contacts = ("account_id,email,first_name,role,status,is_primary\nACC-1,ana@harbor.example,Ana,admin,active,true\n"
                "ACC-2,bo@bay.example,Bo,admin,active,true\nACC-3,cy@cove.example,Cy,admin,active,true\n")
    project = make({"hello": playbook("hello", 0)}, accounts_csv=accounts, contacts_csv=contacts, database=db_url,
                   delivery={"quiet_hours": {"start": "14:00", "end": "20:00"}})
    project.run(T0)  # 15:00 UTC: queued, held by quiet hours
    with project.engine.begin() as conn:  # a row the store holds however it got there
        conn.execute(update(outbox).where(outbox.c.account_id == "ACC-2")
                     .values(to_addr="bo@bay.example\nBcc: x@elsewhere.example"))
    project.run(T0 + timedelta(hours=6))
    rows = {r.account_id: r for r in project.rows(outbox)}
    assert {a: r.state for a, r in rows.items()} == {"ACC-1": "sent", "ACC-2": "failed", "ACC-3": "sent"}
    assert rows["ACC-2"].last_error.startswith("message cannot be built: ")
    assert ("hello", "rejected") in reasons(project, "failed")


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_non_ascii_mailbox_goes_out_with_smtputf8_or_fails_alone(make: Any, db_url: str, smtputf8: bool) -> None:
    accounts = ACCOUNTS + "ACC-2,Bay Line,5000,active,basic,adopted,maria@acme.example\n"
    contacts = ("account_id,email,first_name,role,status,is_primary\nACC-1,José@Exämple.com,José,admin,active,true\n"
                "ACC-2,bo@bay.example,Bo,admin,active,true\n")
    with SmtpServer(smtputf8=smtputf8) as server:
        project = make({"hello": playbook("hello", 0)}, accounts_csv=accounts, contacts_csv=contacts, database=db_url,
                       delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": server.port, "timeout": 5}})
        project.run(T0)
        received = [r.recipients for r in server.received]
    rows = {r.account_id: r for r in project.rows(outbox)}
    assert rows["ACC-1"].to_addr == "josé@xn--exmple-cua.com" and rows["ACC-2"].state == "sent"
    if smtputf8:
        assert rows["ACC-1"].state == "sent"
        assert received == [["josé@xn--exmple-cua.com"], ["bo@bay.example"]]
        return
    assert rows["ACC-1"].state == "failed"
    assert "josé@xn--exmple-cua.com needs SMTPUTF8, which 127.0.0.1" in rows["ACC-1"].last_error
    assert received == [["bo@bay.example"]]
    # about our server, not the person: no suppression, no bounce, the contact stays active
    assert project.rows(contacts_table, contacts_table.c.status != "active") == []
    with project.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() == 0
