"""Writing many rows of one table at once: a sync's inserts and updates.

The rows go to the driver as they are, past SQLAlchemy's per-row statement machinery, which was
most of a sync's write time: each column's bind processor (JSON, dates, booleans as the dialect
stores them) is looked up once per call, not once per value. Inserts on PostgreSQL are one COPY;
its updates are one statement per thousand rows, their rows passed as one JSON array read back with
json_to_recordset (an executemany there is one statement per row). SQLite runs in-process, where
executemany is the fast way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, BindParameter, Boolean, Column, Connection, Integer, Table, bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from playbookd.store.chunks import chunked

Processor = Callable[[Any], Any] | None


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], **fixed: Any) -> None:
    """INSERT `rows`; `fixed`: columns with one value for every row. A column some rows lack (a JSON
    source's rows need not have the same keys) takes its scalar default in them, or NULL; columns
    no row gives take their default, as a SQLAlchemy insert would."""
    if not rows:
        return
    first = rows[0].keys()
    names = list(first)
    if not all(row.keys() == first for row in rows):  # one comparison per row, in C: most rows are alike
        names = list(dict.fromkeys(n for row in rows for n in row))
        absent = {c.name: c.default.arg if isinstance(c.default, ScalarElementColumnDefault) else None
                  for c in table.c if c.name in names}
        rows = [{n: row.get(n, absent[n]) for n in names} for row in rows]
    fixed = {**_defaults(table, [*names, *fixed]), **fixed}
    columns = ", ".join([*names, *fixed])
    if conn.dialect.name == "postgresql":
        _copy(conn, table, f"COPY {table.name} ({columns}) FROM STDIN", names, rows, fixed)
        return
    marks = ", ".join("?" * (len(names) + len(fixed)))
    _many(conn, table, f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", names, rows, fixed)


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]],
                increment: Sequence[str] = (), **fixed: Any) -> None:
    """UPDATE the row whose `key` column is each row's `key` with the row's other values (rows with
    other keys than the first's are updated apart, each with the columns it gives); `increment`:
    integer columns each row adds one to; `fixed`: columns set to one value for every row."""
    if not rows:
        return
    shapes: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    for same in shapes.values():
        _update(conn, table, key, same, increment, fixed)


def upsert_rows(conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (each with the same columns), or UPDATE the other columns of those whose `keys`
    exist: one executemany of the driver's own, as insert_rows."""
    if not rows:
        return
    names = list(rows[0])
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    sets = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    _many(conn, table, f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))}) "
                       f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}", names, rows, {})


def _update(conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]],
            increment: Sequence[str], fixed: Mapping[str, Any]) -> None:
    names = [n for n in rows[0] if n != key]
    added = [f"{n} = {table.name}.{n} + 1" for n in increment]
    if conn.dialect.name != "postgresql":
        sets = ", ".join([f"{n} = ?" for n in [*names, *fixed]] + added)
        _many(conn, table, f"UPDATE {table.name} SET {sets} WHERE {key} = ?", [*names, key], rows, fixed,
              fixed_first=True)
        return
    sets = ", ".join([f"{n} = u.{n}" for n in names] + added + [f"{n} = {_bound(table, n)}" for n in fixed])
    recordset = text(f"UPDATE {table.name} SET {sets} FROM {_recordset(table, [key, *names])} "
                     f"WHERE {table.name}.{key} = u.{key}")
    one = f"UPDATE {table.name} SET {', '.join([f'{n} = %s' for n in [*names, *fixed]] + added)} WHERE {key} = %s"
    # converted as every other value the writer sends (a None is NULL, never JSON null), not by the type
    constants: list[BindParameter[Any]] = [bindparam(f"f_{name}", value) for name, value in zip(
        fixed, _constants(conn, table, fixed), strict=True)]
    for batch in chunked(rows):
        payload = json.dumps(batch)
        if "\\u0000" in payload:
            # json_to_recordset cannot turn \u0000 into text, while a json column stores it as it is
            # (synced data is hostile): such a batch is written row by row instead
            _many(conn, table, one, [*names, key], batch, fixed, fixed_first=True)
        else:
            conn.execute(recordset.bindparams(bindparam("rows", payload), *constants))


def _defaults(table: Table, given: Sequence[str]) -> dict[str, Any]:
    return {c.name: c.default.arg for c in table.c
            if c.name not in given and isinstance(c.default, ScalarElementColumnDefault)}


def _processors(conn: Connection, table: Table, names: Sequence[str]) -> list[Processor]:
    dialect = conn.dialect
    found = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    return [_json(p) if p is not None and isinstance(table.c[n].type, JSON) else p
            for n, p in zip(names, found, strict=True)]


def _json(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON column's processor, with its empty object encoded once: most contacts' `data` and most
    accounts' `changes` are {}, and encoding them was a tenth of a first sync's writes."""
    empty = process({})

    def processed(value: Any) -> Any:
        return empty if value.__class__ is dict and not value else process(value)

    return processed


def _bound(table: Table, name: str) -> str:
    """A constant's place in PostgreSQL's UPDATE: JSON comes as its text (see _constants)."""
    return f"CAST(:f_{name} AS json)" if isinstance(table.c[name].type, JSON) else f":f_{name}"


def _values(conn: Connection, table: Table, names: Sequence[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A function from a row to its values in `names` order, each as the driver takes it."""
    steps = [(i, p) for i, p in enumerate(_processors(conn, table, names)) if p is not None]
    # itemgetter of one name gives the value, not a tuple of it
    get: Callable[[Mapping[str, Any]], Any] = itemgetter(*names) if len(names) > 1 else _single(names[0])

    def values(row: Mapping[str, Any]) -> list[Any]:
        found = list(get(row))  # the columns without a processor (most) as they are, in one call
        for i, p in steps:
            if (v := found[i]) is not None:
                found[i] = p(v)
        return found

    return values


def _single(name: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    return lambda row: (row[name],)


def _constants(conn: Connection, table: Table, fixed: Mapping[str, Any]) -> list[Any]:
    """`fixed`'s values as the driver takes them, converted as a row's values are (`_values`)."""
    return _values(conn, table, list(fixed))(fixed) if fixed else []


def _many(conn: Connection, table: Table, sql: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]],
          fixed: Mapping[str, Any], fixed_first: bool = False) -> None:
    """One executemany of `sql`: each row's `names` values, with `fixed`'s after them (or, for an
    UPDATE whose key comes last, before the last)."""
    values = _values(conn, table, names)
    constants = _constants(conn, table, fixed)
    if fixed_first:
        params = [(*(v := values(row))[:-1], *constants, v[-1]) for row in rows]
    else:
        params = [(*values(row), *constants) for row in rows]
    conn.exec_driver_sql(sql, params)


def _copy(conn: Connection, table: Table, sql: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]],
          fixed: Mapping[str, Any]) -> None:
    """COPY FROM STDIN on the connection's own transaction. JSON goes as its text, where a json
    column keeps a \\u0000 as it is; the driver escapes what COPY's text format needs."""
    dumps = [json.dumps if isinstance(table.c[n].type, JSON) else None for n in [*names, *fixed]]
    constants = [v if d is None or v is None else d(v) for v, d in zip(fixed.values(), dumps[len(names):],
                                                                         strict=True)]
    own = list(zip(names, dumps, strict=False))
    driver = conn.connection.driver_connection
    assert driver is not None  # a connection in use has its driver's
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([row[n] if d is None or row[n] is None else d(row[n]) for n, d in own] + constants)
    except driver.Error as exc:  # as SQLAlchemy's own: an IntegrityError, a DataError, an OperationalError
        raise DBAPIError.instance(sql, None, exc, driver.Error, dialect=conn.dialect) from exc


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
