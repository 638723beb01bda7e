"""Audit entries held back to the end of a transaction: written in order, taken back, or lost with it."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from playbookd.store import audit
from playbookd.store.database import connect, transaction
from playbookd.store.schema import audit as audit_table


def _events(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_table.c.event).order_by(audit_table.c.id)).scalars())


def test_held_entries_are_written_at_the_end_in_their_order(engine: Engine) -> None:
    with transaction(engine) as conn, audit.held(conn):
        audit.record(conn, "first", account_id="a")
        audit.record_many(conn, [{"event": "second"}, {"event": "third"}])
        with engine.connect() as other:  # not yet written: the block writes them as it ends
            assert list(other.execute(select(audit_table.c.id))) == []
    assert _events(engine) == ["first", "second", "third"]


def test_dropped_entries_are_not_written(engine: Engine) -> None:
    with transaction(engine) as conn, audit.held(conn):
        audit.record(conn, "kept")
        count = audit.held_count(conn)
        audit.record(conn, "taken back")
        audit.drop_held(conn, count)
        audit.record(conn, "after")
    assert _events(engine) == ["kept", "after"]


def test_an_error_inside_writes_none_and_recording_goes_on_directly_after(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction(engine) as conn, audit.held(conn):
        audit.record(conn, "lost")
        raise RuntimeError("the store failed")
    with transaction(engine) as conn:
        audit.record(conn, "direct")
        assert audit.held_count(conn) == 0
    assert _events(engine) == ["direct"]


def test_a_store_dropping_the_connection_is_the_error_raised(pg_url: str) -> None:
    """Not an error about the held entries the dropped connection can no longer tell about."""
    engine = connect(pg_url)
    try:
        with pytest.raises(OperationalError), engine.begin() as conn, audit.held(conn):
            audit.record(conn, audit.SENT, account_id="A1")
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    finally:
        engine.dispose()
