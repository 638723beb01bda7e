"""Writing many rows of one table at once: a sync's inserts and updates, a thousand rows at a time.

On PostgreSQL one statement per chunk, its rows passed as one JSON array and read back with
json_to_recordset: an executemany there is one statement per row, which even pipelined was most
of a sync's time. SQLite runs in-process, where executemany is the fast way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Connection, Integer, Table, bindparam, text, update

from playbookd.store.chunks import chunked


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], **fixed: Any) -> None:
    """INSERT `rows` (all with the same keys); `fixed`: columns with one value for every row."""
    if not rows:
        return
    names = list(rows[0])
    recordset = text(f"INSERT INTO {table.name} ({', '.join([*names, *fixed])}) "
                     f"SELECT {', '.join([*names, *(f':f_{n}' for n in fixed)])} FROM {_recordset(table, names)}")
    many = table.insert().values(fixed)
    for batch in chunked(rows):
        if not _run(conn, table, recordset, batch, fixed):
            conn.execute(many, list(batch))


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]],
                increment: Sequence[str] = (), **fixed: Any) -> None:
    """UPDATE the row whose `key` column is each row's `key` with the row's other values (all rows
    with the same keys); `increment`: integer columns each row adds one to; `fixed`: columns set to
    one value for every row."""
    if not rows:
        return
    names = [n for n in rows[0] if n != key]
    sets = ", ".join([f"{n} = u.{n}" for n in names] + [f"{n} = {table.name}.{n} + 1" for n in increment]
                     + [f"{n} = :f_{n}" for n in fixed])
    recordset = text(f"UPDATE {table.name} SET {sets} FROM {_recordset(table, [key, *names])} "
                     f"WHERE {table.name}.{key} = u.{key}")
    many = update(table).where(table.c[key] == bindparam(f"b_{key}")).values(
        {n: bindparam(f"b_{n}") for n in names} | {n: table.c[n] + 1 for n in increment} | fixed)
    for batch in chunked(rows):
        if not _run(conn, table, recordset, batch, fixed):
            conn.execute(many, [{f"b_{n}": v for n, v in row.items()} for row in batch])


def _run(conn: Connection, table: Table, statement: Any, batch: Sequence[Mapping[str, Any]],
         fixed: Mapping[str, Any]) -> bool:
    """The batch as one statement on PostgreSQL, if it can be; False: run it as an executemany.
    json_to_recordset cannot turn \\u0000 into text, while a json column stores it as it is, so a
    batch with a NUL anywhere (synced data is hostile) takes the slower way."""
    if conn.dialect.name != "postgresql":
        return False
    payload = json.dumps(batch)
    if "\\u0000" in payload:
        return False
    constants = [bindparam(f"f_{name}", value, type_=table.c[name].type) for name, value in fixed.items()]
    conn.execute(statement.bindparams(bindparam("rows", payload), *constants))
    return True


def _recordset(table: Table, names: list[str]) -> str:
    return f"json_to_recordset(CAST(:rows AS JSON)) AS u({', '.join(f'{n} {_sql_type(table.c[n])}' for n in names)})"


def _sql_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, Integer):
        return "bigint"
    return "text"
