"""Schema migrations with Alembic, on SQLite and PostgreSQL alike.

Every command brings the store to the current revision before using it (cheap when it already
is); on PostgreSQL an advisory lock makes replicas starting together migrate one at a time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from playbookd.store import locks

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(conn: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision now)."""
    with engine.connect() as conn:
        before = current(conn)
        if before == head():
            return before, before
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            locks.hold_for_transaction(conn, locks.MIGRATION, 0)
        before = current(conn)
        command.upgrade(_config(conn), "head")
    return before, head()
