"""Alembic migrations on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cli_helpers import playbookd
from sqlalchemy import Connection, inspect, text

from playbookd.cadence import tasks as work
from playbookd.config.tasks import Tasks
from playbookd.store import migrate
from playbookd.store.database import make_engine, utcnow
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


def test_addresses_stored_before_normalisation_take_their_canonical_form(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate._config(conn), "0002")
            legacy(conn)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            people = conn.execute(text("SELECT id, account_id, email FROM contacts ORDER BY id")).all()
            suppressed = conn.execute(text("SELECT email, category FROM suppressions ORDER BY email, category")).all()
            messages = conn.execute(text("SELECT id, to_addr, state FROM outbox ORDER BY id")).all()
            counts = conn.execute(text("SELECT email, soft_in_row FROM bounces ORDER BY email")).all()
    finally:
        engine.dispose()
    assert [(a, e) for _, a, e in people] == [("A1", "a@example.com"), ("A2", "user@xn--bcher-kva.example"),
                                               ("A1", "b@example.com"), ("A2", "odd..one@example.com")]
    assert [tuple(r) for r in suppressed] == [("a@example.com", "*"), ("a@example.com", "renewals"),
                                             ("user@xn--bcher-kva.example", "*")]
    # the duplicate contact's queued message is skipped; the other messages follow their address
    assert [(to, state) for _, to, state in messages] == [("a@example.com", "sent"), ("a@example.com", "skipped"),
                                                          ("user@xn--bcher-kva.example", "queued")]
    assert [tuple(r) for r in counts] == [("a@example.com", 2)]


def legacy(conn: Connection) -> None:
    """Rows as the sync before normalisation stored them (lowercased only)."""
    now = "2026-01-01 00:00:00"
    conn.execute(text("INSERT INTO contacts (id, account_id, email, status, is_primary, position, data, synced_at) "
                      "VALUES (:id, :a, :e, 'active', false, :id, '{}', :now)"), [
        {"id": 1, "a": "A1", "e": "a@example.com", "now": now},
        {"id": 2, "a": "A2", "e": "user@bücher.example", "now": now},
        {"id": 3, "a": "A1", "e": '"a"@example.com', "now": now},  # the same mailbox as contact 1
        {"id": 4, "a": "A1", "e": "b(work)@example.com", "now": now},
        {"id": 5, "a": "A2", "e": "odd..one@example.com", "now": now},  # cannot be normalised: left
    ])
    conn.execute(text("INSERT INTO suppressions (email, category, reason, created_at) VALUES (:e, :c, 'manual', :now)"),
                 [{"e": "a@example.com", "c": "*", "now": now}, {"e": '"a"@example.com', "c": "*", "now": now},
                  {"e": "a(x)@example.com", "c": "renewals", "now": now},
                  {"e": "user@bücher.example", "c": "*", "now": now}])
    conn.execute(text("INSERT INTO bounces (email, soft_in_row, updated_at) VALUES (:e, :n, :now)"),
                 [{"e": '"a"@example.com', "n": 2, "now": now}])
    conn.execute(text("INSERT INTO outbox (id, key, message_id, playbook_id, account_id, contact_id, to_addr, "
                      "template, category, priority, subject, html, text, headers, state, attempts, not_before, "
                      "created_at) "
                      "VALUES (:id, :id, :id, 'p', :a, :c, :to, 't', 'general', 0, 's', 'h', 't', '{}', :state, 0, "
                      ":now, :now)"), [
        {"id": 1, "a": "A1", "c": 1, "to": "a@example.com", "state": "sent", "now": now},
        {"id": 2, "a": "A1", "c": 3, "to": '"a"@example.com', "state": "queued", "now": now},
        {"id": 3, "a": "A2", "c": 2, "to": "user@bücher.example", "state": "queued", "now": now},
    ])


def test_tasks_stored_before_0009_stay_open_and_can_be_closed(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate._config(conn), "0007")
            conn.execute(text("INSERT INTO tasks (id, key, account_id, playbook_id, enrollment_id, title, assignee, "
                              "state, created_at) VALUES (:id, :key, 'A1', 'p', 7, 'Call', 'm@acme.example', 'open', "
                              "'2026-01-01 00:00:00')"), [{"id": 1, "key": "7:1"}, {"id": 2, "key": "8:1"}])
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT state, refresh_count, revision, open_key, step_key FROM tasks "
                                     "ORDER BY id")).all()
        # two open tasks of one step from before 0008: both kept (no open_key), neither one refused
        assert [tuple(r) for r in rows] == [("open", 0, 1, None, None), ("open", 0, 1, None, None)]
        (done,) = work.change(engine, [1], "done", note=None, user="m", now=utcnow(), settings=Tasks())
        assert (done.old_state, done.new_state) == ("open", "done")
    finally:
        engine.dispose()


def test_the_claim_index_goes_with_a_downgrade_and_comes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0014")
        assert "ix_outbox_claim" not in {i["name"] for i in inspect(engine).get_indexes("outbox")}
        assert migrate.upgrade(engine) == ("0014", migrate.head())
        assert "ix_outbox_claim" in {i["name"] for i in inspect(engine).get_indexes("outbox")}
    finally:
        engine.dispose()
