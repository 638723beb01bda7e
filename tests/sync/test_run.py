"""Sync against real SQLite and PostgreSQL: typing, bad rows, changes, contacts, events, segments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.errors import UserError, ValidationError
from playbookd.model.account import AccountRecord
from playbookd.store.accounts import get_account, iter_accounts, load_account_types
from playbookd.store.schema import audit, contacts, events, fields, state
from playbookd.sync.run import SyncReport, sync
from playbookd.sync.segments import assign_segments

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)
TIERS = [
    {"name": "high_touch", "when": {"arr": {"gte": 100000}}},
    {"name": "low_touch", "when": {"arr": {"gte": 20000}}},
    {"name": "tech_touch"},
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config(tmp_path: Path, *sources: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> Config:
    data: dict[str, Any] = {"company": {"postal_address": "1 Main St"}, "sources": list(sources)}
    if segments is not None:
        data["segments"] = segments
    cfg = Config.model_validate(data)
    cfg.path = tmp_path / "config.yaml"
    return cfg


def src(name: str, path: Path, entity: str = "accounts", **extra: Any) -> dict[str, Any]:
    kind = "jsonl" if path.suffix == ".jsonl" else "csv"
    return {"name": name, "kind": kind, "entity": entity, "path": str(path), **extra}


def account(engine: Engine, account_id: str) -> AccountRecord | None:
    with engine.connect() as conn:
        return get_account(conn, account_id, load_account_types(conn))


def stored_types(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(fields.c.name, fields.c.type)).all())


def problems(report: SyncReport) -> list[str]:
    return [str(p) for s in report.sources for p in s.problems]


def test_well_known_and_custom_fields_are_typed(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv",
                 "id,name,arr,renewal_date,last_login_at,nps,seats,trial,started,score,zip,plan,fit\n"
                 "ACME-1,Acme,1200.50,2024-09-01,2024-04-01T10:00:00Z,9,25,true,2023-01-15,0.5,01234,,yes\n")
    report = sync(engine, config(tmp_path, src("crm", path)), now=NOW)
    assert report.ok, problems(report)
    rec = account(engine, "ACME-1")
    assert rec is not None
    assert rec["arr"] == 1200.5 and rec["nps"] == 9 and rec["seats"] == 25
    assert rec["renewal_date"] == date(2024, 9, 1)
    assert rec["last_login_at"] == datetime(2024, 4, 1, 10, tzinfo=UTC)
    assert rec["trial"] is True and rec["started"] == date(2023, 1, 15) and rec["zip"] == "01234"
    assert rec["fit"] == "yes"  # only true/false are booleans: a yes/no column often has a third answer
    assert "plan" not in rec  # empty cell is null
    assert rec["_changes"] == {} and rec["segment"] == "default"
    assert stored_types(engine) == {"seats": "integer", "trial": "boolean", "started": "date",
                                    "score": "decimal", "zip": "string", "fit": "string"}


def test_inferred_types_widen_across_rows_and_syncs(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,tier,code,seen\nA1,1,7,2024-01-01\nA2,2.5,gold,2024-01-02T10:00\n")
    cfg = config(tmp_path, src("crm", path))
    sync(engine, cfg, now=NOW)
    assert stored_types(engine) == {"tier": "decimal", "code": "string", "seen": "datetime"}
    a1, a2 = account(engine, "A1"), account(engine, "A2")
    assert a1 is not None and a2 is not None
    assert a1["tier"] == 1 and a2["tier"] == 2.5
    assert a1["code"] == "7" and a2["code"] == "gold"  # the earlier 7 was restated as text
    assert a1["seen"] == datetime(2024, 1, 1, tzinfo=UTC)
    write(tmp_path / "b.csv", "id,tier\nA3,high\n")
    sync(engine, config(tmp_path, src("more", tmp_path / "b.csv")), now=LATER)
    assert stored_types(engine)["tier"] == "string"
    a1 = account(engine, "A1")
    assert a1 is not None and a1["tier"] == "1"


def test_renames_and_declared_types(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "acct,revenue,code,seats\nA1,500,42,3\nA2,600,43,3.5\n")
    cfg = config(tmp_path, src("crm", path, fields={"id": "acct", "arr": "revenue"},
                               types={"code": "string", "seats": "integer"}))
    report = sync(engine, cfg, now=NOW)
    assert problems(report) == [f"{path}:3: account A2: seats: expected an integer, got '3.5'"]
    rec = account(engine, "A1")
    assert rec is not None and rec["arr"] == 500 and rec["code"] == "42" and rec["seats"] == 3
    assert account(engine, "A2") is None
    assert stored_types(engine) == {"code": "string", "seats": "integer"}


def test_bad_rows_are_reported_with_file_line_and_good_rows_applied(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv",
                 'id,name,arr,note\n'
                 'A1,Acme,100,"multi\nline note"\n'
                 'A2,Beta,abc,x\n'
                 ',NoId,5,x\n'
                 'A1,Again,7,x\n'
                 'A4,Delta,5,x,extra\n'
                 'A5,Echo,5,x\n'
                 'A6,Fox,lots,y\n')
    report = sync(engine, config(tmp_path, src("crm", path)), now=NOW)
    assert not report.ok
    assert problems(report) == [
        f"{path}:4: account A2: arr: expected a number, got 'abc'",
        f"{path}:5: account without an id",
        f"{path}:6: account A1: id: duplicate (first on line 2)",
        f"{path}:7: row has 5 cells but the header has 4",
        f"{path}:9: account A6: arr: expected a number, got 'lots'",
    ]
    (only,) = report.sources
    assert (only.read, only.inserted) == (7, 2)
    a1 = account(engine, "A1")
    assert a1 is not None and a1["name"] == "Acme" and a1["note"] == "multi\nline note"
    assert account(engine, "A5") is not None
    assert account(engine, "A2") is None and account(engine, "A6") is None  # nothing half-applied


def test_jsonl_values_are_typed_and_bad_lines_reported(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", "\n".join([
        json.dumps({"id": "A1", "arr": 1200, "renewal_date": "2024-09-01", "joined": "2024-01-01",
                    "beta": True, "seats": 4}),
        '{"id": "A2", "arr": }',
        json.dumps({"id": "A3", "meta": {"x": 1}}),
        json.dumps({"id": 4, "arr": "12.5", "nps": 7.0}),
    ]) + "\n")
    report = sync(engine, config(tmp_path, src("product", path)), now=NOW)
    assert problems(report) == [
        f"{path}:2: bad JSON: Expecting value at column 21",
        f"{path}:3: account A3: meta: expected a single value, got dict",
    ]
    a1, a4 = account(engine, "A1"), account(engine, "4")
    assert a1 is not None and a4 is not None
    assert a1["renewal_date"] == date(2024, 9, 1) and a1["joined"] == date(2024, 1, 1)
    assert a1["beta"] is True and a1["arr"] == 1200
    assert a4["arr"] == 12.5 and a4["nps"] == 7
    assert stored_types(engine) == {"joined": "date", "beta": "boolean", "seats": "integer"}


def test_changes_track_the_previous_value_per_sync(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    cfg = config(tmp_path, src("crm", path))
    write(path, "id,name,arr,plan\nA1,Acme,100,pro\nA2,Beta,5,free\n")
    sync(engine, cfg, now=NOW)
    write(path, "id,name,arr,plan\nA1,,250,pro\nA2,Beta,5,free\nA3,Gamma,1,free\n")
    report = sync(engine, cfg, now=LATER)
    (s,) = report.sources
    assert (s.read, s.inserted, s.updated, s.unchanged) == (3, 1, 1, 1)
    a1 = account(engine, "A1")
    assert a1 is not None and "name" not in a1 and a1["arr"] == 250
    assert a1["_changes"] == {"arr": 100, "name": "Acme"}
    a3 = account(engine, "A3")
    assert a3 is not None and a3["_changes"] == {}
    with engine.connect() as conn:
        raw = conn.execute(select(state.c.value).where(state.c.key == "sync:crm")).scalar_one()
    assert raw == {"read": 3, "inserted": 1, "updated": 1, "unchanged": 1, "problems": 0,
                   "at": LATER.isoformat(), "ok": True, "last_success": LATER.isoformat(), "last_error": None,
                   "last_error_at": None, "attempts": 0, "next_retry": None}
    write(path, "id,name,arr,plan\nA1,,250,enterprise\n")
    sync(engine, cfg, now=LATER + timedelta(days=1))
    a1 = account(engine, "A1")
    # no evaluation ran in between: the earlier changes wait for one, beside the new change
    assert a1 is not None and a1["_changes"] == {"arr": 100, "name": "Acme", "plan": "pro"}


def test_two_sources_merge_and_keep_each_others_fields(engine: Engine, tmp_path: Path) -> None:
    crm = write(tmp_path / "crm.csv", "id,name,arr\nA1,Acme,100\n")
    product = write(tmp_path / "p.jsonl", '{"id": "A1", "last_login_at": "2024-04-30T08:00:00+00:00"}\n')
    cfg = config(tmp_path, src("product", product), src("crm", crm))
    sync(engine, cfg, now=NOW)
    write(crm, "id,name,arr\nA1,Acme,300\n")
    sync(engine, cfg, only=["crm"], now=LATER)
    rec = account(engine, "A1")
    assert rec is not None
    assert (rec["name"], rec["arr"]) == ("Acme", 300)
    assert rec["last_login_at"] == datetime(2024, 4, 30, 8, tzinfo=UTC)
    assert rec["_changes"] == {"arr": 100}
    write(product, '{"id": "A1", "last_login_at": "2024-05-02T08:00:00+00:00"}\n')
    sync(engine, cfg, only=["product"], now=LATER)
    rec = account(engine, "A1")
    assert rec is not None and set(rec["_changes"]) == {"arr", "last_login_at"}


def test_contacts_and_derived_fields(engine: Engine, tmp_path: Path) -> None:
    accounts_csv = write(tmp_path / "a.csv", "id,name\nA1,Acme\nA2,Beta\n")
    people = tmp_path / "c.csv"
    header = "account_id,email,role,status,timezone,is_primary,team\n"
    write(people, header
          + "A1,Chris@Acme.com,Champion,active,Europe/Paris,,sales\n"
          + "A1,ada@acme.com,admin,,,true,\n"
          + "A1,u@acme.com,user,active,,,\n"
          + "A2,b@beta.com,admin,active,Mars/Olympus,,\n"
          + "A9,z@zeta.com,admin,active,,,\n"
          + "A2,not-an-email,admin,active,,,\n"
          + "A2,,admin,active,,,\n"
          + "A1,u@acme.com,user,active,,,\n")
    cfg = config(tmp_path, src("people", people, entity="contacts"), src("crm", accounts_csv))
    report = sync(engine, cfg, now=NOW)
    assert [s.source for s in report.sources] == ["crm", "people"]
    assert problems(report) == [
        f"{people}:5: contact b@beta.com: timezone: unknown time zone 'Mars/Olympus'",
        f"{people}:6: contact z@zeta.com: unknown account A9",
        f"{people}:7: contact 'not-an-email': not a deliverable address: an email address must have an @-sign",
        f"{people}:8: contact without an email",
        f"{people}:9: contact u@acme.com of account A1: duplicate (first on line 4)",
    ]
    with engine.connect() as conn:
        rows = conn.execute(select(contacts).order_by(contacts.c.position)).all()
    assert [(r.email, r.role, r.status, r.is_primary, r.position) for r in rows] == [
        ("chris@acme.com", "champion", "active", False, 1),
        ("ada@acme.com", "admin", "active", True, 2),
        ("u@acme.com", "user", "active", False, 3),
    ]
    assert rows[0].timezone == "Europe/Paris" and rows[0].data == {"team": "sales"}
    a1 = account(engine, "A1")
    assert a1 is not None and a1["contacts_active"] == 3 and "champion_left_at" not in a1
    a2 = account(engine, "A2")
    assert a2 is not None and a2["contacts_active"] == 0

    write(people, header + "A1,chris@acme.com,champion,left,,,\nA1,ada@acme.com,admin,active,,,\n")
    sync(engine, cfg, only=["people"], now=LATER)
    a1 = account(engine, "A1")
    assert a1 is not None
    assert a1["champion_left_at"] == LATER and "admin_left_at" not in a1
    assert a1["contacts_active"] == 2
    assert a1["_changes"] == {"champion_left_at": None, "contacts_active": 3}

    sync(engine, cfg, only=["people"], now=LATER + timedelta(days=1))
    a1 = account(engine, "A1")
    assert a1 is not None and a1["champion_left_at"] == LATER  # still left: untouched
    assert a1["_changes"] == {"champion_left_at": None}


def test_events_are_inserted_once(engine: Engine, tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "id\nA1\n")
    path = write(tmp_path / "e.csv",
                 "event_id,account_id,event,occurred_at,score\n"
                 "e1,A1,nps_response,2024-04-30T10:00:00Z,6\n"
                 ",A1,login,,\n"
                 "e2,A1,,,\n"
                 "e3,A7,login,,\n"
                 "e4,A1,login,yesterday,\n")
    cfg = config(tmp_path, src("crm", tmp_path / "a.csv"),
                 src("ev", path, entity="events", fields={"id": "event_id", "name": "event"}))
    first = sync(engine, cfg, now=NOW)
    assert problems(first) == [
        f"{path}:4: event ? of account A1: needs account_id and name",
        f"{path}:5: event login: unknown account A7",
        f"{path}:6: event login of account A1: occurred_at: expected an ISO 8601 datetime, got 'yesterday'",
    ]
    second = sync(engine, cfg, only=["ev"], now=LATER)
    assert (first.sources[1].inserted, second.sources[0].inserted, second.sources[0].unchanged) == (2, 0, 2)
    with engine.connect() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    assert [r.name for r in rows] == ["nps_response", "login"]
    assert rows[1].dedupe_key.startswith("ev:#")  # no id column value: a hash of the row
    assert rows[0].dedupe_key == "ev:e1" and rows[0].data == {"score": 6}
    assert rows[1].occurred_at.replace(tzinfo=UTC) == NOW


def test_segments_first_match_wins_and_reassign(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,arr\nBIG,150000\nMID,100000\nLOW,50000\nTINY,100\nNONE,\n")
    cfg = config(tmp_path, src("crm", path), segments=TIERS)
    sync(engine, cfg, now=NOW)
    with engine.connect() as conn:
        types = load_account_types(conn)
    got = {r["id"]: r["segment"] for r in iter_accounts(engine, types)}
    assert got == {"BIG": "high_touch", "MID": "high_touch", "LOW": "low_touch",
                   "TINY": "tech_touch", "NONE": "tech_touch"}
    stricter = config(tmp_path, src("crm", path), segments=[
        {"name": "high_touch", "when": {"arr": {"gt": 100000}}}, *TIERS[1:]])
    assert assign_segments(engine, stricter) == 1
    mid = account(engine, "MID")
    assert mid is not None and mid["segment"] == "low_touch"
    assert assign_segments(engine, stricter, ["MID", "BIG"]) == 0


def test_segment_with_bad_condition_is_a_config_error(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,arr\nA1,5\n")
    cfg = config(tmp_path, src("crm", path), segments=[
        {"name": "big", "when": {"arrr": {"gte": 1}}}, {"name": "rest"}])
    with pytest.raises(ValidationError, match="segment big: bad condition") as caught:
        sync(engine, cfg, now=NOW)
    assert "unknown field 'arrr'; did you mean 'arr'?" in str(caught.value)
    assert account(engine, "A1") is None


def test_segment_on_a_custom_field_seen_for_the_first_time(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,seats\nA1,500\nA2,5\n")
    cfg = config(tmp_path, src("crm", path), segments=[
        {"name": "big", "when": {"seats": {"gte": 100}}}, {"name": "rest"}])
    sync(engine, cfg, now=NOW)
    a1, a2 = account(engine, "A1"), account(engine, "A2")
    assert a1 is not None and a2 is not None and (a1["segment"], a2["segment"]) == ("big", "rest")


def test_missing_file_is_reported_and_other_sources_still_run(engine: Engine, tmp_path: Path) -> None:
    good = write(tmp_path / "a.csv", "id\nA1\n")
    cfg = config(tmp_path, src("gone", tmp_path / "gone.csv"), src("crm", good),
                 {"name": "wh", "kind": "sql", "entity": "accounts", "url": "sqlite://",
                  "query": "select * from nowhere"})
    report = sync(engine, cfg, now=NOW)
    assert problems(report) == [f"{tmp_path / 'gone.csv'}: no such file (source gone)",
                                "source wh: query failed: no such table: nowhere"]
    assert account(engine, "A1") is not None
    assert report.summary_lines()[:2] == [
        "gone (accounts): read 0, inserted 0, updated 0, unchanged 0, 1 problem(s)",
        f"  {tmp_path / 'gone.csv'}: no such file (source gone)",
    ]
    with engine.connect() as conn:
        synced = conn.execute(select(audit.c.detail).where(audit.c.event == "synced")
                              .order_by(audit.c.id)).scalars().all()
    assert [d["source"] for d in synced] == ["gone", "crm", "wh"]
    assert synced[1] == {"source": "crm", "entity": "accounts", "read": 1, "inserted": 1,
                         "updated": 0, "unchanged": 0, "problems": 0}


def test_only_filters_and_unknown_names_are_listed(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, src("crm", write(tmp_path / "a.csv", "id\nA1\n")),
                 src("other", write(tmp_path / "b.csv", "id\nB1\n")))
    with pytest.raises(UserError, match="unknown source 'nope'; sources are: crm, other"):
        sync(engine, cfg, only=["nope"])
    report = sync(engine, cfg, only=["other"], now=NOW)
    assert [s.source for s in report.sources] == ["other"]
    assert account(engine, "A1") is None and account(engine, "B1") is not None


def test_iter_accounts_streams_in_id_order_across_batches(engine: Engine, tmp_path: Path) -> None:
    ids = [f"A{i:04d}" for i in range(2500)]
    path = write(tmp_path / "a.csv", "id,n\n" + "".join(f"{a},{i}\n" for i, a in enumerate(reversed(ids))))
    report = sync(engine, config(tmp_path, src("crm", path)), now=NOW)
    assert report.sources[0].inserted == 2500
    with engine.connect() as conn:
        types = load_account_types(conn)
        assert conn.execute(select(func.count()).select_from(fields)).scalar_one() == 1
    got = [r["id"] for r in iter_accounts(engine, types, batch_size=7)]
    assert got == ids
    window = [r["id"] for r in iter_accounts(engine, types, batch_size=10, id_range=("A0010", "A0030"))]
    assert window == ids[10:30]
    assert [r["id"] for r in iter_accounts(engine, types, 1000, ("A2490", None))] == ids[2490:]
    assert len(list(iter_accounts(engine, types, 1000, (None, "A1000")))) == 1000


def test_ids_with_control_characters_are_refused_with_their_line(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", "\n".join(json.dumps(row) for row in [
        {"id": "A1", "name": "Good"}, {"id": "A\n2"}, {"id": "A\u20283"}, {"id": "A\u00854"}, {"id": "A" * 201},
        {"id": "A6", "name": "Also good"},
    ]) + "\n")
    people = write(tmp_path / "c.jsonl", "\n".join(json.dumps(row) for row in [
        {"account_id": "A1", "email": "ana@a1.example"}, {"account_id": "A\u200b1", "email": "bo@a1.example"},
    ]) + "\n")
    report = sync(engine, config(tmp_path, src("crm", path), src("people", people, "contacts")), now=NOW)
    assert problems(report) == [
        f"{path}:2: account 'A\\n2': id contains the control character U+000A",
        f"{path}:3: account 'A\\u20283': id contains the control character U+2028",
        f"{path}:4: account 'A\\x854': id contains the control character U+0085",
        f"{path}:5: account {'A' * 201!r}: id longer than 200 characters",
        f"{people}:2: contact bo@a1.example: account_id contains the control character U+200B",
    ]
    assert account(engine, "A1") is not None and account(engine, "A6") is not None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == 1


def test_declared_custom_fields_type_the_column_and_refuse_what_does_not_fit(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,seats_purchased,usage_fit\nA1,12,no\nA2,many,yes\nA3,7,investigate\n")
    cfg = config(tmp_path, src("crm", path))
    cfg.custom_fields = {"seats_purchased": "integer", "usage_fit": "string"}
    report = sync(engine, cfg, now=NOW)
    assert problems(report) == [f"{path}:3: account A2: seats_purchased: expected an integer, got 'many'"]
    a1 = account(engine, "A1")
    assert a1 is not None and a1["seats_purchased"] == 12 and a1["usage_fit"] == "no"
    again = sync(engine, cfg, now=LATER)
    (s,) = again.sources
    assert (s.updated, s.unchanged) == (0, 2)  # re-syncing the same data changes nothing


def test_a_yes_no_column_with_a_third_answer_keeps_its_words_and_resyncs_unchanged(engine: Engine,
                                                                                   tmp_path: Path) -> None:
    rows = "".join(f"A{i},{'yes' if i % 2 else 'no'}\n" for i in range(300)) + "A300,investigate\n"
    path = write(tmp_path / "a.csv", "id,usage_fit\n" + rows)
    cfg = config(tmp_path, src("crm", path))
    sync(engine, cfg, now=NOW)
    (s,) = sync(engine, cfg, now=LATER).sources
    assert (s.updated, s.unchanged) == (0, 301)
    a1 = account(engine, "A1")
    assert a1 is not None and a1["usage_fit"] == "yes" and stored_types(engine) == {"usage_fit": "string"}


def test_a_number_out_of_range_is_a_row_problem_not_a_stall(engine: Engine, tmp_path: Path) -> None:
    """`1e1000000` is ten bytes, and as an exact integer a million digits that take seconds to build
    (and that no JSON encoder writes): refused for a declared number, kept as text when inferred."""
    path = write(tmp_path / "a.csv", "id,arr,note\nA1,1e1000000,1e400\nA2,1e300,x\n")
    report = sync(engine, config(tmp_path, src("crm", path, types={"arr": "decimal"})), now=NOW)
    assert problems(report) == [f"{path}:2: account A1: arr: number out of range (beyond 1e±308): '1e1000000'"]
    assert account(engine, "A1") is None
    a2 = account(engine, "A2")
    assert a2 is not None and a2["arr"] == 10**300
