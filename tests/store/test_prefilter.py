"""The pre-filter never leaves out an account the reference evaluator says a condition holds for: random
conditions over a random population of awkward values (numbers as text, booleans, big and small
numbers, dates with every offset, naive datetimes, text that is not an ISO date, nested values,
missing and null fields), in a time zone far from UTC, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.durations import Months
from playbookd.model import fields as F
from playbookd.model.conditions import All, Any_, Condition, Leaf, Not
from playbookd.model.evaluation import evaluate
from playbookd.store import prefilter
from playbookd.store.accounts import iter_accounts, load_account_types
from playbookd.store.database import transaction
from playbookd.store.schema import accounts, fields

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TYPES = {"d": F.DATE, "dt": F.DATETIME, "n": F.DECIMAL, "s": F.STRING, "b": F.BOOLEAN}  # "x": untyped
FIELDS = (*TYPES, "x")
OFFSETS = ("Z", "+00:00", "-11:00", "+13:45", "+05:30", "-03:00", "")
SPANS: tuple[Any, ...] = (43_200, 86_400, 3 * 86_400, 30 * 86_400, Months(1), 10**12)
TEXT = ("pro", "basic", "Pro", "5", "true", "", "é", "2026-03-01", "20260301", "2026-W09-7", "1e3")
NUMBERS = (0, 1, -3, 5, 7, 10, 4.999, 5.0, 0.5, 1e-7, 2**53 + 1, 10**20, -0.0)


def _moment(rng: random.Random) -> datetime:
    return NOW + timedelta(seconds=rng.uniform(-45, 45) * 86_400)


def _datetime_text(rng: random.Random) -> str:
    text = _moment(rng).strftime(rng.choice(("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d")))
    return text if len(text) == 10 else text + rng.choice(OFFSETS)


def _raw(rng: random.Random, name: str) -> Any:
    """A stored value the field's type decodes (a synced store holds no other)."""
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.3:
        return rng.choice(NUMBERS)
    if roll < 0.4:
        return rng.choice((True, False))
    if roll < 0.45:
        return rng.choice(([1, "pro"], {"a": 1}))
    if name == "d":
        return _moment(rng).date().isoformat() if roll < 0.9 else rng.choice(("20260301", "2026-W09-7"))
    if name in ("dt", "x") and roll < 0.85:
        return _datetime_text(rng)
    if name == "dt":
        return rng.choice(("20260301T120000Z", "2026-03-01", "2026-W09-7T10:00"))
    return rng.choice(TEXT)


def _literal(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(NUMBERS)
    if roll < 0.4:
        return rng.choice((True, False))
    if roll < 0.7:
        return rng.choice(TEXT)
    moment = _moment(rng)
    return moment.date() if roll < 0.8 else moment.replace(tzinfo=None) if roll < 0.85 else \
        moment.astimezone(ZoneInfo("Asia/Kathmandu"))


def _leaf(rng: random.Random) -> Leaf:
    name = rng.choice((*FIELDS, "segment"))
    op = rng.choice(("eq", "in", "gt", "gte", "lt", "lte", "between", "exists", "older_than", "within_last",
                     "within_next", "beyond_next", "ne", "not_in", "matches"))
    if op == "in" or op == "not_in":
        return Leaf(name, op, tuple(_literal(rng) for _ in range(rng.randint(1, 3))))
    if op == "between":
        low, high = sorted((_literal(rng), _literal(rng)), key=repr)
        return Leaf(name, op, (low, high))
    if op == "exists":
        return Leaf(name, op, rng.choice((True, False)))
    if op in ("older_than", "within_last", "within_next", "beyond_next"):
        return Leaf(name, op, rng.choice(SPANS))
    if op == "matches":
        return Leaf(name, op, "^p")
    return Leaf(name, op, _literal(rng) if name != "segment" else rng.choice(("high", "low", 5)))


def _condition(rng: random.Random, depth: int = 0) -> Condition:
    roll = rng.random()
    if depth < 2 and roll < 0.4:
        items = tuple(_condition(rng, depth + 1) for _ in range(rng.randint(2, 3)))
        return All(items) if rng.random() < 0.6 else Any_(items)
    if depth < 2 and roll < 0.45:
        return Not(_condition(rng, depth + 1))
    return _leaf(rng)


def _populate(engine: Engine, rng: random.Random, count: int) -> None:
    rows = [{"id": f"A{i:04d}", "segment": rng.choice(("high", "low")), "changes": {}, "synced_at": NOW,
             "created_at": NOW, "data": {name: v for name in FIELDS if (v := _raw(rng, name)) is not None
                                         or rng.random() < 0.5}}
            for i in range(count)]
    with transaction(engine) as conn:
        conn.execute(fields.insert(), [{"entity": "accounts", "name": n, "type": t} for n, t in TYPES.items()])
        conn.execute(accounts.insert(), rows)


def _let_through(engine: Engine, cond: Condition, tz: ZoneInfo) -> set[str] | None:
    found = prefilter.any_of([prefilter.where(cond, NOW, tz, engine.dialect.name)], engine.dialect.name)
    if found is None:
        return None
    with engine.connect() as conn:
        return {row.id for row in conn.execute(select(accounts.c.id).where(found))}


def test_the_prefilter_lets_through_every_account_the_reference_enrols(engine: Engine) -> None:
    rng = random.Random(17 if engine.dialect.name == "sqlite" else 29)
    tz = ZoneInfo("Pacific/Kiritimati")  # UTC+14: a date's midnight is the day before in UTC
    _populate(engine, rng, 300)
    with engine.connect() as conn:
        types = load_account_types(conn)
    records = list(iter_accounts(engine, types))
    narrowed = 0
    for _ in range(400):
        cond = _condition(rng)
        expected = {r["id"] for r in records if evaluate(cond, r, NOW, tz)}
        through = _let_through(engine, cond, tz)
        if through is None:
            continue
        missed = expected - through
        assert not missed, f"{cond} left out {sorted(missed)[:5]}, which it holds for"
        narrowed += len(through) < len(records)
    assert narrowed >= 100, "most conditions answerable in SQL must narrow the accounts"


def test_what_sql_cannot_answer_lets_every_account_through(engine: Engine) -> None:
    tz = ZoneInfo("UTC")
    sure = Leaf("n", "gte", 5)
    for cond in (Leaf("s", "matches", "^p"), Leaf("s", "ne", "pro"), Not(sure), Leaf("s", "gt", "m"),
                 Leaf("n", "changed", True), Any_((sure, Leaf("s", "contains", "x")))):
        assert prefilter.where(cond, NOW, tz, engine.dialect.name) is None, cond
    # an `all` keeps the parts SQL answers
    assert prefilter.where(All((sure, Leaf("s", "matches", "^p"))), NOW, tz, engine.dialect.name) is not None


def test_a_row_sqlite_cannot_parse_gets_through(tmp_path: Any) -> None:
    from sqlalchemy import text

    from playbookd.store.database import connect

    engine = connect(f"sqlite:///{tmp_path}/nan.db")
    try:
        with transaction(engine) as conn:
            conn.execute(text("INSERT INTO accounts (id, segment, data, changes, synced_at, created_at) "
                              "VALUES ('A', 'x', '{\"n\": NaN, \"s\": \"pro\"}', '{}', :t, :t), "
                              "('B', 'x', '{\"n\": 1, \"s\": \"basic\"}', '{}', :t, :t)"), {"t": NOW})
        assert _let_through(engine, Leaf("s", "eq", "pro"), ZoneInfo("UTC")) == {"A"}
    finally:
        engine.dispose()


def test_dates_far_from_now_let_everyone_through_rather_than_fail(engine: Engine) -> None:
    tz = ZoneInfo("UTC")
    assert prefilter.where(Leaf("d", "older_than", 10**15), NOW, tz, engine.dialect.name) is None
    assert prefilter.where(Leaf("d", "gt", date.min), NOW, tz, engine.dialect.name) is None


def test_a_read_of_some_fields_gives_them_as_the_whole_record_has_them(engine: Engine) -> None:
    _populate(engine, random.Random(3), 60)
    with engine.connect() as conn:
        types = load_account_types(conn)
    whole = list(iter_accounts(engine, types))
    for names in ([], ["b"], ["d", "x", "nowhere"], list(FIELDS)):
        some = list(iter_accounts(engine, types, names=names))
        keep = set(names or FIELDS) | {"id", "segment", "_changes"}
        assert [{k: v for k, v in r.items() if k in keep or k.startswith("_")} for r in some] == \
            [{k: v for k, v in r.items() if k in keep or k.startswith("_")} for r in whole], names


def test_a_nul_in_a_field_not_read_and_many_fields_leave_the_read_and_the_filter_working(engine: Engine) -> None:
    """PostgreSQL's `->` refuses a document holding \\u0000 (sync stores it as it is), and a call takes
    at most 100 arguments: such reads fall back to the whole document, such rows get through."""
    with transaction(engine) as conn:
        conn.execute(fields.insert(), [{"entity": "accounts", "name": "s", "type": F.STRING}])
        conn.execute(accounts.insert(), [
            {"id": "A1", "segment": "low", "changes": {}, "synced_at": NOW, "created_at": NOW,
             "data": {"s": "pro", "note": "a\x00b"}},
            {"id": "A2", "segment": "low", "changes": {}, "synced_at": NOW, "created_at": NOW, "data": {"s": "pro"}},
            {"id": "A3", "segment": "low", "changes": {}, "synced_at": NOW, "created_at": NOW,
             "data": {"s": "basic"}}])
    with engine.connect() as conn:
        types = load_account_types(conn)
    for names in (["s"], [f"f{i}" for i in range(150)] + ["s"]):
        assert [r.get("s") for r in iter_accounts(engine, types, names=names)] == ["pro", "pro", "basic"]
    through = _let_through(engine, Leaf("s", "eq", "pro"), ZoneInfo("UTC"))
    assert through is not None and {"A1", "A2"} <= through and "A3" not in through
    where = prefilter.any_of([prefilter.where(Leaf("s", "eq", "pro"), NOW, ZoneInfo("UTC"), engine.dialect.name)],
                             engine.dialect.name)
    assert [r["id"] for r in iter_accounts(engine, types, where=where, names=["s"])] == ["A1", "A2"]


def test_a_flag_read_along_names_the_accounts_it_would_leave_out_and_decodes_only_what_they_need(
        engine: Engine) -> None:
    _populate(engine, random.Random(5), 80)
    with engine.connect() as conn:
        types = load_account_types(conn)
    whole = {r["id"]: r for r in iter_accounts(engine, types)}
    rng, tz, flagged = random.Random(6), ZoneInfo("Pacific/Chatham"), 0
    for _ in range(60):
        cond = _condition(rng)
        flag = prefilter.any_of([prefilter.where(cond, NOW, tz, engine.dialect.name)], engine.dialect.name)
        through = _let_through(engine, cond, tz)
        if flag is None or through is None:
            continue
        flagged += 1
        misses: set[str] = set()
        read = list(iter_accounts(engine, types, batch_size=7, names=list(FIELDS), flag=flag, misses=misses,
                                  keep=2))
        assert [r["id"] for r in read] == sorted(whole), "every account is read, none filtered"
        assert misses == set(whole) - through
        for record in read:
            kept = set(FIELDS) if record["id"] in through else set(FIELDS[:2])
            assert {k: v for k, v in record.items() if k in kept or k in ("id", "segment", "_changes")} == \
                {k: v for k, v in whole[record["id"]].items() if k in kept or k in ("id", "segment", "_changes")}
            assert set(record) <= kept | {"id", "segment", "_changes"}
    assert flagged >= 10, "the conditions must narrow to prove anything"
