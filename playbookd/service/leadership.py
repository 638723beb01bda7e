"""Several replicas on one PostgreSQL: one of them leads.

The leader holds a session-level advisory lock on a connection of its own; when its process
dies, PostgreSQL drops the session and the lock, and another replica takes it at its next
try. Only the leader syncs and plans evaluations (engine.ranges); every replica evaluates
ranges and delivers. On SQLite there is one process, which always leads.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import Connection, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from playbookd.store import locks

log = logging.getLogger("playbookd.cluster")


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def hold(self) -> bool:
        """True while this process leads; tries to become leader when it does not."""
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            return self._still_held() if self.conn is not None else self._acquire()
        except SQLAlchemyError as exc:
            log.warning("leadership check failed: %s", exc)
            self.release()
            return False

    def _acquire(self) -> bool:
        conn = self.engine.connect()
        key = func.hashtext(func.current_schema())
        got = locks.try_for_session(conn, locks.LEADER, key)
        conn.commit()  # a session lock outlives the transaction; do not sit idle in one
        if got:
            self.conn = conn
        else:
            conn.close()
        return got

    def _still_held(self) -> bool:
        assert self.conn is not None
        self.conn.execute(text("SELECT 1"))
        self.conn.commit()
        return True

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                # Invalidate, not just close: a pooled connection would keep the session, and the lock.
                self.conn.invalidate()
                self.conn.close()
            self.conn = None
