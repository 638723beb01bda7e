"""Small named values kept in the store (last cycle, leader heartbeat)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from playbookd.store.database import insert_ignore, utcnow
from playbookd.store.schema import state


def put(engine: Engine, key: str, value: Any) -> None:
    with engine.begin() as conn:
        now = utcnow()
        if not insert_ignore(conn, state, [{"key": key, "value": value, "updated_at": now}]):
            conn.execute(update(state).where(state.c.key == key).values(value=value, updated_at=now))


def get(engine: Engine, key: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(state.c.value).where(state.c.key == key)).scalar()
