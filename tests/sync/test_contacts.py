"""Contact addresses normalised once, at sync, on SQLite and PostgreSQL: what is stored is the
canonical form, and what is not a deliverable mailbox is a row problem with its line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.schema import contacts
from playbookd.sync.run import sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def synced(engine: Engine, tmp_path: Path, people: str,
           header: str = "account_id,email,role") -> tuple[list[str], list[str]]:
    (tmp_path / "a.csv").write_text("id,name\nA1,Acme\nA2,Beta\n")
    (tmp_path / "c.csv").write_text(header + "\n" + people)
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": [
        {"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")},
        {"name": "people", "kind": "csv", "entity": "contacts", "path": str(tmp_path / "c.csv")}]})
    cfg.path = tmp_path / "config.yaml"
    report = sync(engine, cfg, now=NOW)
    with engine.connect() as conn:
        stored = list(conn.execute(select(contacts.c.email).order_by(contacts.c.position)).scalars())
    return stored, [str(p) for s in report.sources for p in s.problems]


def test_addresses_are_stored_in_their_canonical_form(engine: Engine, tmp_path: Path) -> None:
    stored, problems = synced(engine, tmp_path, 'A1,a(x)@Example.com,admin\nA2,"""b""@example.com",admin\n'
                              "A1,user@Bücher.example,user\nA2,JOSÉ@exämple.com,user\n")
    assert problems == []
    assert stored == ["a@example.com", "b@example.com", "user@xn--bcher-kva.example", "josé@xn--exmple-cua.com"]


def test_what_is_not_a_deliverable_mailbox_is_a_row_problem_with_its_line(engine: Engine, tmp_path: Path) -> None:
    stored, problems = synced(engine, tmp_path, "A1,ok@acme.example,admin\nA1,Ana <ana@acme.example>,user\n"
                              "A1,a@localhost,user\nA2,b@harbor.test,user\nA2,x@[192.0.2.1],user\n")
    people = tmp_path / "c.csv"
    assert problems == [
        f"{people}:3: contact 'Ana <ana@acme.example>': not a deliverable address: give the address alone, "
        "without a name or angle brackets",
        f"{people}:4: contact 'a@localhost': not a deliverable address: the part after the @-sign is not valid. "
        "It should have a period",
        f"{people}:5: contact 'b@harbor.test': not a deliverable address: the part after the @-sign is a "
        "special-use or reserved name that cannot be used with email",
        f"{people}:6: contact 'x@[192.0.2.1]': not a deliverable address: a bracketed IP address after the "
        "@-sign is not allowed here",
    ]
    assert stored == ["ok@acme.example"]


def test_two_spellings_of_one_mailbox_are_one_contact(engine: Engine, tmp_path: Path) -> None:
    stored, problems = synced(engine, tmp_path, 'A1,a@example.com,admin\nA1,"""a""@Example.com",user\n')
    assert stored == ["a@example.com"]
    assert problems == [f"{tmp_path / 'c.csv'}:3: contact a@example.com of account A1: duplicate (first on line 2)"]


def test_a_value_the_store_cannot_hold_is_a_problem_of_its_row_alone(engine: Engine, tmp_path: Path) -> None:
    """A NUL, or a name longer than its column: PostgreSQL would refuse the whole batch for one row."""
    stored, problems = synced(engine, tmp_path, "A1,ok@acme.example,admin,Ana,UTC\n"
                              "A1,nul@acme.example,admin,An\x00a,UTC\n"
                              f"A1,long@acme.example,admin,{'L' * 201},UTC\n"
                              f"A1,role@acme.example,{'r' * 101},Bo,UTC\n"
                              f"A1,zone@acme.example,admin,Bo,{'Z' * 65}\n"
                              "A2,last@acme.example,user,Cy,Europe/Paris\n",
                              header="account_id,email,role,first_name,timezone")
    assert stored == ["ok@acme.example", "last@acme.example"]
    people = tmp_path / "c.csv"
    assert problems == [
        f"{people}:3: contact nul@acme.example: first_name: contains a NUL character",
        f"{people}:4: contact long@acme.example: first_name: 201 characters, more than the 200 a contact's "
        "first_name may have",
        f"{people}:5: contact role@acme.example: role: 101 characters, more than the 100 a contact's role may have",
        f"{people}:6: contact zone@acme.example: timezone: 65 characters, more than the 64 a contact's timezone "
        "may have"]
