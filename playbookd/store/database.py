"""Connecting to the store: engine creation, schema set-up, time helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, create_engine, event, inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from playbookd.errors import DependencyError
from playbookd.store import migrate
from playbookd.store.chunks import chunked


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the CLI read while the daemon writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("postgresql"):
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def connect(url: str, create: bool = True) -> Engine:
    """Engine for `url`, schema ensured; an unreachable database raises DependencyError."""
    engine = make_engine(url)
    try:
        if create:
            migrate.upgrade(engine)
        else:
            inspect(engine).get_table_names()
    except OperationalError as exc:
        raise DependencyError(f"cannot reach the database {engine.url!r}: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise DependencyError(f"database error at {engine.url!r}: {exc}") from None
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` for work that writes. On SQLite the write lock is taken at the start: a
    transaction that read first and writes later fails at once (SQLITE_BUSY, which busy_timeout does
    not wait out) when another connection committed in between, as the delivery thread does while
    cadences advance. PostgreSQL needs nothing here."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def _insert(conn: Connection, table: Table) -> Any:
    """INSERT with the dialect's ON CONFLICT clauses (PostgreSQL and SQLite both have them)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, silently skipping those that collide with a unique key; returns inserted count."""
    if len(rows) == 1:  # the values as parameters: the statement compiles once, not once per row
        stmt = _insert(conn, table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
        return max(conn.execute(stmt, dict(rows[0])).rowcount, 0)
    inserted = 0
    # One multi-row VALUES statement per chunk with preserve_rowcount: otherwise SQLAlchemy reports
    # -1 for INSERTs on psycopg, and callers rely on the count to know whether they won a race.
    for chunk in chunked(rows, 200):
        stmt = _insert(conn, table).values(chunk).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
        inserted += max(conn.execute(stmt).rowcount, 0)
    return inserted


def insert_ignore_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows in one executemany (one statement compiled, however many rows), skipping those
    that collide with a unique key; for callers that need no count."""
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(), [dict(row) for row in rows])


def upsert(conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]],
           only: Sequence[str] | None = None) -> None:
    """Insert rows, or update the non-key columns (or `only` these) of those whose `keys` already exist."""
    if not rows:
        return
    stmt = _insert(conn, table)
    others = list(only) if only is not None else [c for c in rows[0] if c not in keys]
    conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                            set_={c: stmt.excluded[c] for c in others}), rows)
