"""Bulk inserts and updates on a real SQLite file and a real PostgreSQL schema: every value round-trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from playbookd.store.bulk import insert_rows, update_rows, upsert_rows
from playbookd.store.database import aware
from playbookd.store.marks import UNSEEN
from playbookd.store.schema import accounts, audit, contacts, health_history

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
TRICKY = {"quote": 'say "hi"', "backslash": "a\\b", "braces": "{1,2}", "unicode": "Zoë ✓", "n": 3.5,
          "nested": {"list": [1, None, "x"]}, "none": None}


def stored(engine: Engine) -> list[tuple[object, ...]]:
    query = select(contacts.c.email, contacts.c.first_name, contacts.c.is_primary, contacts.c.position,
                   contacts.c.data, contacts.c.synced_at).order_by(contacts.c.email)
    with engine.connect() as conn:
        return [(*row[:5], aware(row[5])) for row in conn.execute(query)]


def test_rows_written_in_bulk_read_back_as_written(engine: Engine) -> None:
    rows = [{"account_id": "A1", "email": f"p{i:04d}@a1.example", "first_name": None if i % 2 else "O'Brien, \"Al\"",
             "status": "active", "is_primary": i == 0, "position": i, "data": {**TRICKY, "i": i}}
            for i in range(1500)]  # more than one chunk
    with engine.begin() as conn:
        insert_rows(conn, contacts, rows, synced_at=NOW)
    found = stored(engine)
    assert len(found) == 1500
    assert found[0] == ("p0000@a1.example", "O'Brien, \"Al\"", True, 0, {**TRICKY, "i": 0}, NOW)
    assert found[1] == ("p0001@a1.example", None, False, 1, {**TRICKY, "i": 1}, NOW)

    with engine.connect() as conn:
        ids = dict(conn.execute(select(contacts.c.email, contacts.c.id)).all())
    later = NOW.replace(hour=11)
    changes = [{"id": ids[f"p{i:04d}@a1.example"], "first_name": "Zoë", "is_primary": True, "data": {"i": -i}}
               for i in range(0, 1500, 2)]
    with engine.begin() as conn:
        update_rows(conn, contacts, "id", changes, synced_at=later)
    found = stored(engine)
    assert found[2] == ("p0002@a1.example", "Zoë", True, 2, {"i": -2}, later)
    assert found[3] == ("p0003@a1.example", None, False, 3, {**TRICKY, "i": 3}, NOW), "rows not named stay"


def test_a_nul_in_a_json_value_is_written_too_and_the_counter_goes_up(engine: Engine) -> None:
    """PostgreSQL's json_to_recordset refuses \\u0000 where a json column keeps it: such a batch is
    written row by row instead, with the same result."""
    rows = [{"account_id": "A1", "email": f"n{i}@a1.example", "first_name": "N", "status": "active",
             "is_primary": False, "position": i, "data": {"name": "N\x00ull" if i == 1 else "plain"}}
            for i in range(3)]
    with engine.begin() as conn:
        insert_rows(conn, contacts, rows, synced_at=NOW)
    with engine.connect() as conn:
        ids = dict(conn.execute(select(contacts.c.email, contacts.c.id)).all())
    with engine.begin() as conn:
        update_rows(conn, contacts, "id", [{"id": ids["n1@a1.example"], "data": {"name": "still N\x00ull"}}],
                    increment=("position",))
    found = {row[0]: row for row in stored(engine)}
    assert found["n0@a1.example"][4] == {"name": "plain"}
    assert found["n1@a1.example"][3:5] == (2, {"name": "still N\x00ull"})  # position 1 + 1


def test_columns_not_given_take_their_defaults_and_an_update_bumps_unseen(engine: Engine) -> None:
    """A new account is unseen (1) as an ORM insert would make it, and each bulk update adds one:
    incremental evaluation reads that count (store.marks)."""
    rows = [{"id": f"A{i}", "segment": "s", "data": {"n": i}, "changes": {}} for i in range(3)]
    with engine.begin() as conn:
        insert_rows(conn, accounts, rows, synced_at=NOW, created_at=NOW)
        update_rows(conn, accounts, "id", [{"id": "A1", "data": {"n": -1}}], increment=UNSEEN)
    with engine.connect() as conn:
        found = {r.id: (r.unseen, r.data) for r in conn.execute(select(accounts.c.id, accounts.c.unseen,
                                                                        accounts.c.data))}
    assert found == {"A0": (1, {"n": 0}), "A1": (2, {"n": -1}), "A2": (1, {"n": 2})}


def test_rows_with_other_keys_than_the_first_are_written_whole(engine: Engine) -> None:
    """A JSON source's rows need not have the same keys: none of a later row's values is dropped, and a
    column a row lacks takes its default."""
    rows = [{"account_id": "A1", "email": "a@a1.example", "position": 1, "data": {}},
            {"account_id": "A1", "email": "z@a1.example", "first_name": "Zed", "position": 2, "data": {},
             "is_primary": True}]
    with engine.begin() as conn:
        insert_rows(conn, contacts, rows, synced_at=NOW)
        ids = dict(conn.execute(select(contacts.c.email, contacts.c.id)).all())
    assert [r[:4] for r in stored(engine)] == [("a@a1.example", None, False, 1), ("z@a1.example", "Zed", True, 2)]
    with engine.begin() as conn:
        update_rows(conn, contacts, "id", [{"id": ids["a@a1.example"], "first_name": "Ann"},
                                           {"id": ids["z@a1.example"], "position": 7}], synced_at=NOW)
    assert [r[:4] for r in stored(engine)] == [("a@a1.example", "Ann", False, 1), ("z@a1.example", "Zed", True, 7)]


def test_a_refused_copy_is_the_store_error_sqlalchemy_raises(engine: Engine) -> None:
    row = {"account_id": "A1", "email": "a@a1.example", "position": 1, "data": {}}
    with engine.begin() as conn:
        insert_rows(conn, contacts, [row], synced_at=NOW)
        first = conn.execute(select(contacts.c.id)).scalar_one()
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(conn, contacts, [{**row, "id": first}], synced_at=NOW)


def test_a_constant_is_written_as_a_row_value_is(engine: Engine) -> None:
    """A column every row sets to one value is converted as the rows' own values are: a None in a
    JSON column is NULL (on PostgreSQL an UPDATE's constant was JSON `null`), an object its JSON."""
    rows = [{"at": NOW, "event": "probe", "detail": {"n": i}} for i in range(3)]
    with engine.begin() as conn:
        insert_rows(conn, audit, rows)
        ids = sorted(conn.execute(select(audit.c.id)).scalars())
        update_rows(conn, audit, "id", [{"id": ids[0], "reason": "cleared"}], detail=None)
        update_rows(conn, audit, "id", [{"id": ids[1], "reason": "given"}], detail={"kept": ["x", None]})
        update_rows(conn, audit, "id", [{"id": ids[2], "detail": None}])
    with engine.connect() as conn:
        found = conn.execute(select(audit.c.reason, audit.c.detail.is_(None), audit.c.detail)
                             .order_by(audit.c.id)).all()
    assert [tuple(row) for row in found] == [("cleared", True, None), ("given", False, {"kept": ["x", None]}),
                                             (None, True, None)]


def test_an_empty_object_is_written_as_any_other(engine: Engine) -> None:
    """{} is encoded once per write, and reads back as {} beside objects that are not empty."""
    rows = [{"account_id": "A1", "email": f"e{i}@a1.example", "position": i, "data": {} if i % 2 else {"i": i}}
            for i in range(4)]
    with engine.begin() as conn:
        insert_rows(conn, contacts, rows, synced_at=NOW)
        ids = dict(conn.execute(select(contacts.c.email, contacts.c.id)).all())
        update_rows(conn, contacts, "id", [{"id": ids["e0@a1.example"], "data": {}}])
    assert [r[4] for r in stored(engine)] == [{}, {}, {"i": 2}, {}]


def test_an_upsert_inserts_new_keys_and_updates_the_others(engine: Engine) -> None:
    day = NOW.date()
    first = [{"account_id": a, "day": day, "score": 50.0, "color": "yellow", "high": 50.0, "low": 50.0,
              "updated_at": NOW} for a in ("A1", "A2")]
    later = NOW.replace(hour=11)
    again = [{"account_id": "A2", "day": day, "score": 20.0, "color": "red", "high": 50.0, "low": 20.0,
              "updated_at": later},
             {"account_id": "A3", "day": day, "score": None, "color": None, "high": None, "low": None,
              "updated_at": later}]
    with engine.begin() as conn:
        upsert_rows(conn, health_history, ["account_id", "day"], first)
        upsert_rows(conn, health_history, ["account_id", "day"], again)
    with engine.connect() as conn:
        found = [(*row[:6], aware(row[6])) for row in conn.execute(select(health_history).order_by(
            health_history.c.account_id))]
    assert found == [("A1", day, 50.0, "yellow", 50.0, 50.0, NOW), ("A2", day, 20.0, "red", 50.0, 20.0, later),
                     ("A3", day, None, None, None, None, later)]
