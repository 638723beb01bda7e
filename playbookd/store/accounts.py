"""Reading accounts from the store and the small SQL helpers sync shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import ARRAY, Connection, Engine, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from playbookd.model.account import AccountRecord, account_types, decode_account
from playbookd.store.schema import accounts, fields

CHUNK = 1000
# what a record is made of; timestamps stay unread (parsing them costs on SQLite)
RECORD = (accounts.c.id, accounts.c.segment, accounts.c.data, accounts.c.changes)


def custom_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "accounts"))
    return {name: kind for name, kind in rows}


def load_account_types(conn: Connection) -> dict[str, str]:
    return account_types(custom_types(conn))


def batches(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def records_by_id(engine: Engine, ids: Iterable[str], types: Mapping[str, str]) -> Iterator[AccountRecord]:
    for batch in batches(ids):
        with engine.connect() as conn:
            query = select(*RECORD).where(accounts.c.id.in_(batch)).order_by(accounts.c.id)
            rows = conn.execute(query).all()
        for row in rows:
            yield decode_account(row.id, row.segment, row.data, row.changes, types)


def iter_accounts(engine: Engine, types: Mapping[str, str], batch_size: int = 1000,
                  id_range: tuple[str | None, str | None] | None = None) -> Iterator[AccountRecord]:
    """Accounts ordered by id, `batch_size` at a time (keyset); id_range is [low, high)."""
    low, high = id_range or (None, None)
    last: str | None = None
    while True:
        query = select(*RECORD).order_by(accounts.c.id).limit(batch_size)
        if last is not None:
            query = query.where(accounts.c.id > last)
        elif low is not None:
            query = query.where(accounts.c.id >= low)
        if high is not None:
            query = query.where(accounts.c.id < high)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield decode_account(row.id, row.segment, row.data, row.changes, types)
        if len(rows) < batch_size:
            return
        last = rows[-1].id


def get_account(conn: Connection, account_id: str, types: Mapping[str, str]) -> AccountRecord | None:
    row = conn.execute(select(*RECORD).where(accounts.c.id == account_id)).first()
    return None if row is None else decode_account(row.id, row.segment, row.data, row.changes, types)


def among(conn: Connection, column: Any, values: list[str]) -> Any:
    """column IN values; one array parameter on PostgreSQL, where a thousand bound values plan slowly."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("among", values, type_=ARRAY(String)))
    return column.in_(values)


def upsert(conn: Connection, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    others = [c for c in rows[0] if c not in keys]
    conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                            set_={c: stmt.excluded[c] for c in others}), rows)


