"""The store's own helpers, on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from playbookd.store import state as kv
from playbookd.store.chunks import chunked
from playbookd.store.database import connect, transaction, upsert, utcnow
from playbookd.store.schema import state


def test_a_write_transaction_that_reads_first_is_not_undercut_by_another_writer(tmp_path: Path) -> None:
    # As a cadence does: read an account and its contacts inside a savepoint, then queue an email,
    # while the delivery thread commits in between.
    engine = connect(f"sqlite:///{tmp_path}/store.db")
    other = threading.Thread(target=kv.put, args=(engine, "delivery", 1))
    with transaction(engine) as conn, conn.begin_nested():
        conn.execute(select(state)).all()
        other.start()
        other.join(0.5)  # the other writer now waits for this transaction instead of committing under it
        conn.execute(insert(state).values(key="cadence", value=2, updated_at=utcnow()))
    other.join(30)
    assert not other.is_alive()
    assert kv.get(engine, "cadence") == 2 and kv.get(engine, "delivery") == 1
    engine.dispose()


def test_upsert_inserts_then_updates(engine: Engine) -> None:
    with transaction(engine) as conn:
        upsert(conn, state, ["key"], [{"key": "a", "value": 1, "updated_at": utcnow()}])
        upsert(conn, state, ["key"], [{"key": "a", "value": 2, "updated_at": utcnow()},
                                      {"key": "b", "value": 3, "updated_at": utcnow()}])
    assert (kv.get(engine, "a"), kv.get(engine, "b")) == (2, 3)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(state)).scalar() == 2


def test_chunked_keeps_order_and_the_last_short_chunk() -> None:
    assert list(chunked(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
