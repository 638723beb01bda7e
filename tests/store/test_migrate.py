"""Alembic migrations on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cli_helpers import playbookd
from sqlalchemy import inspect

from playbookd.store import migrate
from playbookd.store.database import make_engine
from playbookd.store.schema import metadata


def test_upgrade_builds_exactly_the_declared_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate.upgrade(engine) == (None, migrate.head())
        with engine.connect() as conn:
            drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            assert migrate.current(conn) == migrate.head()
        assert drift == [], "the migrations and schema.py disagree; add a revision"
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_twice_changes_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        assert migrate.upgrade(engine) == (migrate.head(), migrate.head())
    finally:
        engine.dispose()


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    engines = [make_engine(pg_url) for _ in range(3)]
    results: list[tuple[str | None, str]] = []
    errors: list[BaseException] = []

    def go(engine: object) -> None:
        try:
            results.append(migrate.upgrade(engine))  # type: ignore[arg-type]
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert sorted(before or "" for before, _ in results).count("") == 1, results  # one built it, two found it


def test_db_upgrade_command_reports_the_revision(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "5", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    first = playbookd("db", "upgrade", cwd=project)
    assert first.returncode == 0, first.stderr
    assert f"schema at revision {migrate.head()} (was empty)" in first.stdout
    again = playbookd("db", "upgrade", cwd=project)
    assert again.returncode == 0 and "(was" not in again.stdout


def test_db_upgrade_on_an_unreachable_database_exits_3(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "5", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    env = {"PLAYBOOKD_DATABASE": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    config = (project / "config.yaml").read_text().replace("database: sqlite:///playbookd.db",
                                                            "database: ${PLAYBOOKD_DATABASE}")
    (project / "config.yaml").write_text(config)
    result = playbookd("db", "upgrade", cwd=project, env=env)
    assert result.returncode == 3
    assert "cannot reach the database" in result.stderr
