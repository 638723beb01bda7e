"""Every PostgreSQL advisory lock playbookd takes, in one place, so no two uses share an id.

An advisory lock is named by two 32-bit integers: a class from this registry and a key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

LEADER = 0x706C6179  # "play"; key: hash of the schema, so one leader per deployment even with several per database
MIGRATION = 0x6D696772  # "migr"; key 0: replicas that start together migrate one at a time
RECIPIENTS = 0x63617073  # "caps"; key: hash of the address; one replica at a time counts a recipient's cap


def hold_for_transaction(conn: Connection, lock_class: int, key: Any) -> None:
    """Wait for the lock; PostgreSQL releases it when the transaction ends."""
    conn.execute(select(func.pg_advisory_xact_lock(lock_class, key)))


def try_for_session(conn: Connection, lock_class: int, key: Any) -> bool:
    """Take the lock if free; it lasts until released or the session ends."""
    return bool(conn.execute(select(func.pg_try_advisory_lock(lock_class, key))).scalar())
