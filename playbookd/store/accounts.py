"""Accounts in the store: reading them as records, and writing the fields a playbook sets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Connection,
    Engine,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    select,
    type_coerce,
    update,
)

from playbookd.model import fields as F
from playbookd.model.account import AccountRecord, account_types, decode_account, encode, note_change, same
from playbookd.model.health import HealthRules, health_fields
from playbookd.store import health as H
from playbookd.store.chunks import chunked
from playbookd.store.database import insert_ignore, transaction
from playbookd.store.marks import bump
from playbookd.store.schema import account_digests, accounts, fields

# what a record is made of; timestamps stay unread (parsing them costs on SQLite)
RECORD = (accounts.c.id, accounts.c.segment, accounts.c.data, accounts.c.changes)
MARKS = (accounts.c.unseen, accounts.c.due_us)  # see store.marks
Marks = dict[str, tuple[int, int | None]]  # account id -> (unseen, due_us) as read


def custom_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "accounts"))
    return {name: kind for name, kind in rows}


def load_account_types(conn: Connection) -> dict[str, str]:
    return account_types(custom_types(conn))


MAX_FIELDS = 100  # arguments to one function call: PostgreSQL takes 100, SQLite's json_extract 126


def nul_escaped() -> Any:
    """PostgreSQL: the account's data holds a \\u0000, which its `->` and `->>` refuse to read (the
    whole document is re-parsed; a json column stores it as it is): such a row is read whole."""
    return func.strpos(cast(accounts.c.data, Text), literal("\\u0000", String)) > 0


def _projection(dialect: str, names: Sequence[str] | None) -> Any:
    """The data column, or only the fields of `names`, as one JSON array in their order. SQLite's JSON
    functions raise on a document they cannot parse (NaN): such a row gives its whole document."""
    if names is None:
        return accounts.c.data
    if dialect != "sqlite":
        picked = func.json_build_array(*(accounts.c.data.op("->")(literal(n, String)) for n in names))
        return type_coerce(case((nul_escaped(), accounts.c.data), else_=picked), JSON).label("data")
    paths = [f'$."{name}"' for name in names] * (2 if len(names) == 1 else 1)  # one path gives no array
    return type_coerce(case((func.json_valid(accounts.c.data) == 1, func.json_extract(accounts.c.data, *paths)),
                            else_=accounts.c.data), JSON).label("data")


def _data(data: Any, names: Sequence[str] | None) -> Any:
    return dict(zip(names, data, strict=False)) if names is not None and isinstance(data, list) else data


def _decoded(rows: Iterable[Any], types: Mapping[str, str], marks: Marks | None,
             names: Sequence[str] | None = None, keep: int | None = None) -> list[AccountRecord]:
    records = []
    few = None if names is None or keep is None else names[:keep]  # what a row read as a miss holds
    for row in rows:
        picked = names if few is None or row.hit else few
        records.append(decode_account(row.id, row.segment, _data(row.data, picked), row.changes, types))
        if marks is not None:
            marks[row.id] = (int(row.unseen), row.due_us)
    return records


def records_by_id(engine: Engine, ids: Iterable[str], types: Mapping[str, str],
                  history_since: date | None = None, marks: Marks | None = None) -> Iterator[AccountRecord]:
    """The accounts of `ids` that exist; with their health history from `history_since` when given;
    `marks` gets each one's (unseen, due_us)."""
    columns = (*RECORD, *MARKS) if marks is not None else RECORD
    for batch in chunked(ids):
        with engine.connect() as conn:
            query = select(*columns).where(accounts.c.id.in_(batch)).order_by(accounts.c.id)
            records = _decoded(conn.execute(query), types, marks)
            H.attach(conn, records, history_since)
        yield from records


def iter_accounts(engine: Engine, types: Mapping[str, str], batch_size: int = 1000,
                  id_range: tuple[str | None, str | None] | None = None,
                  history_since: date | None = None, marks: Marks | None = None,
                  where: Any = None, names: Sequence[str] | None = None, flag: Any = None,
                  misses: set[str] | None = None, keep: int | None = None) -> Iterator[AccountRecord]:
    """Accounts ordered by id, `batch_size` at a time (keyset); id_range is [low, high); only those
    `where` (store.prefilter) lets through when given; with `names`, each with only these fields (far
    less to read and decode). With `history_since`, each carries its health history from that day
    on (for trend conditions); `marks` gets each one's (unseen, due_us). `flag`, a WHERE too, is read
    along with every account rather than filtering: `misses` gets the ids of those it does not let
    through (false or null, as a WHERE would leave them out), before they are yielded; with `keep`,
    those are decoded with only the first `keep` of `names` (all they are read for: picking them in
    SQL instead evaluates the WHERE twice, measured dearer)."""
    low, high = id_range or (None, None)
    last: str | None = None
    if names is not None and (not names or len(names) > MAX_FIELDS or any('"' in n or "\\" in n for n in names)):
        names = None  # no SQLite JSON path for such a name; more arguments than a call takes
    if flag is None or misses is None:
        flag = keep = None
    elif names is None:
        keep = None
    record = (accounts.c.id, accounts.c.segment, accounts.c.changes, _projection(engine.dialect.name, names))
    columns = (*record, *MARKS) if marks is not None else record
    if flag is not None:
        columns = (*columns, flag.label("hit"))
    while True:
        query = select(*columns).order_by(accounts.c.id).limit(batch_size)
        if last is not None:
            query = query.where(accounts.c.id > last)
        elif low is not None:
            query = query.where(accounts.c.id >= low)
        if high is not None:
            query = query.where(accounts.c.id < high)
        if where is not None:
            query = query.where(where)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
            records = _decoded(rows, types, marks, names, keep)
            H.attach(conn, records, history_since)
        if flag is not None and misses is not None:
            misses.update(row.id for row in rows if not row.hit)
        yield from records
        if len(rows) < batch_size:
            return
        last = rows[-1].id


def records_in(conn: Connection, ids: Iterable[str], types: Mapping[str, str],
               history_since: date | None = None) -> dict[str, AccountRecord]:
    """The accounts of `ids` that exist, by id, read on `conn` (inside its transaction)."""
    found: dict[str, AccountRecord] = {}
    for batch in chunked(ids):
        rows = conn.execute(select(*RECORD).where(accounts.c.id.in_(batch)))
        records = [decode_account(row.id, row.segment, row.data, row.changes, types) for row in rows]
        H.attach(conn, records, history_since)
        found.update((r["id"], r) for r in records)
    return found


def get_account(conn: Connection, account_id: str, types: Mapping[str, str],
                history_since: date | None = None) -> AccountRecord | None:
    row = conn.execute(select(*RECORD).where(accounts.c.id == account_id)).first()
    if row is None:
        return None
    record = decode_account(row.id, row.segment, row.data, row.changes, types)
    H.attach(conn, [record], history_since)
    return record


def among(conn: Connection, column: Any, values: list[str]) -> Any:
    """column IN values; one array parameter on PostgreSQL, where a thousand bound values plan slowly."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("among", values, type_=ARRAY(String)))
    return column.in_(values)


def set_fields(conn: Connection, account_id: str, values: dict[str, Any], now: datetime,
               health: HealthRules | None = None) -> dict[str, Any]:
    """Write playbook-chosen values, each a change other playbooks' `changed*` see, as a sync's are; with
    `health`, recompute the account's health from the new values. Returns the health fields as now
    stored (none without `health`)."""
    row = conn.execute(select(*RECORD).where(accounts.c.id == account_id)).first()
    if row is None:
        return {}
    data, changes = dict(row.data), dict(row.changes or {})
    for name, value in values.items():
        new = encode(value)
        if not same(data.get(name), new):
            note_change(changes, name, data.get(name), new, now.isoformat())
        data[name] = new
    known = set(F.ACCOUNT_FIELDS) | set(F.DERIVED_FIELDS)
    insert_ignore(conn, fields, [{"entity": "accounts", "name": k, "type": F.infer(v)[0] or F.STRING}
                                       for k, v in values.items() if k not in known])
    scored = {} if health is None else _rescore(conn, row, data, changes, health, now)
    # no digest: the next sync compares the account with its source rows in full (sync.digests)
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(data=data, changes=changes,
                                                                            synced_at=now, source_digest=None,
                                                                            unseen=bump()))
    conn.execute(delete(account_digests).where(account_digests.c.account_id == account_id))
    return scored


def _rescore(conn: Connection, row: Any, data: dict[str, Any], changes: dict[str, Any], health: HealthRules,
             now: datetime) -> dict[str, Any]:
    record = decode_account(row.id, row.segment, data, {}, load_account_types(conn))
    values = health_fields(health, record, now)
    before = data.get("health_score")
    if H.apply(data, changes, values, now.isoformat()):
        move = H.Move(row.id, before, values["health_score"], values["health_color"])
        H.record_moves(conn, [move], now.astimezone(health.tz).date(), now)
    return values


def _recorded_after(change: Mapping[str, Any], moment: datetime) -> bool:
    at = change.get("at")
    return at is not None and datetime.fromisoformat(str(at)) > moment


def consume_changes(engine: Engine, ids: Iterable[str], seen_at: datetime, flips: bool = True) -> None:
    """An evaluation at `seen_at` saw these accounts' changes: drop those recorded until then. A
    change a sync recorded while the evaluation ran stays for the next one. `flips`: a condition
    reads changes, so dropping them is a write the next evaluation must look at."""
    # a `changed` condition's answer flips as its change is dropped: the next one looks again
    seen = {"unseen": bump()} if flips else {}
    statement = (update(accounts).where(accounts.c.id == bindparam("b_id"))
                 .values(changes=bindparam("b_changes", type_=accounts.c.changes.type), **seen))
    for batch in chunked(ids):
        with transaction(engine) as conn:
            rows = conn.execute(select(accounts.c.id, accounts.c.changes).where(accounts.c.id.in_(batch)))
            dropped = []
            for account_id, changes in rows.all():
                kept = {name: c for name, c in (changes or {}).items() if _recorded_after(c, seen_at)}
                if kept != changes:
                    dropped.append({"b_id": account_id, "b_changes": kept})
            if dropped:  # one executemany: a statement per account was most of a small evaluation's writes
                conn.execute(statement, dropped)
