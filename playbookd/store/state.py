"""Small named values kept in the store (last cycle, leader heartbeat)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.engine import Engine

from playbookd.store.database import transaction, upsert, utcnow
from playbookd.store.schema import state


def put(engine: Engine, key: str, value: Any) -> None:
    with transaction(engine) as conn:
        upsert(conn, state, ["key"], [{"key": key, "value": value, "updated_at": utcnow()}])


def get(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()


def read(conn: Connection, key: str) -> Any:
    """`get` inside a transaction the caller holds."""
    return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()


def write(conn: Connection, key: str, value: Any) -> None:
    """`put` inside a transaction the caller holds, so the value commits with the work it describes."""
    upsert(conn, state, ["key"], [{"key": key, "value": value, "updated_at": utcnow()}])


def drop(conn: Connection, key: str) -> None:
    conn.execute(delete(state).where(state.c.key == key))
