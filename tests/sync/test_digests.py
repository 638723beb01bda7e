"""Rows recognised unchanged by their stored digest: skipped, and compared in full again whenever
anything but the sync wrote the row, the config changed, or a segment or a score reads the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.delivery.bounces import hard_bounce
from playbookd.delivery.forget import forget
from playbookd.model.account import AccountRecord
from playbookd.store.accounts import get_account, load_account_types, set_fields
from playbookd.store.database import transaction
from playbookd.store.schema import accounts, contacts
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ACCOUNTS = "id,arr,tier,renewal_date,last_login_at\nA1,1000,1,2024-06-15,2024-04-30\nA2,2000,2,2024-09-01,2024-04-30\n"
CONTACTS = "account_id,email,status\nA1,ana@a1.example,active\nA1,bo@a1.example,active\n"
HEALTH = {"measures": [{"name": "recent", "weight": 1, "when": {"last_login_at": {"within_last": "7d"}},
                        "score": 100, "else": 0}],
          "colors": {"default": {"red": {"lt": 40}, "yellow": {"lt": 70}}}}


def config(tmp_path: Path, accounts_csv: str = ACCOUNTS, contacts_csv: str | None = None,
           **extra: Any) -> Config:
    (tmp_path / "a.csv").write_text(accounts_csv)
    sources = [{"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")}]
    if contacts_csv is not None:
        (tmp_path / "c.csv").write_text(contacts_csv)
        sources.append({"name": "app", "kind": "csv", "entity": "contacts", "path": str(tmp_path / "c.csv")})
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": sources, **extra})
    cfg.path = tmp_path / "config.yaml"
    return cfg


def counts(report: SyncReport) -> list[tuple[int, int, int]]:
    assert report.ok, report.summary_lines()
    return [(s.inserted, s.updated, s.unchanged) for s in report.sources]


def account(engine: Engine, account_id: str) -> AccountRecord:
    with engine.connect() as conn:
        record = get_account(conn, account_id, load_account_types(conn))
    assert record is not None
    return record


def digests(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return {**dict(conn.execute(select(accounts.c.id, accounts.c.source_digest)).all()),
                **dict(conn.execute(select(contacts.c.email, contacts.c.source_digest)).all())}


def test_a_value_a_playbook_set_is_compared_with_the_source_again(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert counts(sync(engine, cfg, now=NOW)) == [(2, 0, 0)]
    assert all(digests(engine).values())
    with transaction(engine) as conn:
        set_fields(conn, "A2", {"arr": 9999}, NOW)
    assert digests(engine)["A2"] is None
    assert counts(sync(engine, cfg, now=NOW + timedelta(hours=1))) == [(0, 1, 1)]
    assert account(engine, "A2")["arr"] == 2000, "the source's value, as without digests"
    assert counts(sync(engine, cfg, now=NOW + timedelta(hours=2))) == [(0, 0, 2)]


def test_a_declared_type_makes_every_row_compare_in_full(engine: Engine, tmp_path: Path) -> None:
    sync(engine, config(tmp_path), now=NOW)
    assert account(engine, "A1")["tier"] == 1
    report = sync(engine, config(tmp_path, custom_fields={"tier": "string"}), now=NOW + timedelta(hours=1))
    assert counts(report) == [(0, 2, 0)]
    assert account(engine, "A1")["tier"] == "1"


def test_a_segment_that_reads_the_clock_moves_rows_that_did_not_change(engine: Engine, tmp_path: Path) -> None:
    segments = [{"name": "renewing", "when": {"renewal_date": {"within_next": "30d"}}}, {"name": "rest"}]
    cfg = config(tmp_path, segments=segments)
    sync(engine, cfg, now=NOW)
    assert account(engine, "A1")["segment"] == "rest"
    assert counts(sync(engine, cfg, now=NOW + timedelta(days=20))) == [(0, 0, 2)]
    assert account(engine, "A1")["segment"] == "renewing"


def test_a_score_that_reads_the_clock_is_recomputed_for_rows_that_did_not_change(engine: Engine,
                                                                                 tmp_path: Path) -> None:
    cfg = config(tmp_path, health=HEALTH)
    sync(engine, cfg, now=NOW)
    assert account(engine, "A1")["health_score"] == 100.0
    report = sync(engine, cfg, now=NOW + timedelta(days=10))
    assert report.health == "health: 2 account(s) scored, 2 moved (2 turned red)"
    assert account(engine, "A1")["health_score"] == 0.0


def test_unchanged_contacts_keep_positions_and_duplicates_are_still_found(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, contacts_csv=CONTACTS)
    sync(engine, cfg, now=NOW)
    assert counts(sync(engine, cfg, now=NOW + timedelta(hours=1))) == [(0, 0, 2), (0, 0, 2)]

    moved = CONTACTS.replace("status\n", "status\nA1,cy@a1.example,active\n") + "A1,ANA@a1.example,active\n"
    report = sync(engine, config(tmp_path, contacts_csv=moved), now=NOW + timedelta(hours=2))
    assert [str(p) for p in report.sources[1].problems] == [
        f"{tmp_path / 'c.csv'}:5: contact ana@a1.example of account A1: duplicate (first on line 3)"]
    assert (report.sources[1].inserted, report.sources[1].updated) == (1, 2), "both moved down one place"
    with engine.connect() as conn:
        rows = conn.execute(select(contacts.c.email, contacts.c.position).order_by(contacts.c.position)).all()
    assert [tuple(r) for r in rows] == [("cy@a1.example", 1), ("ana@a1.example", 2), ("bo@a1.example", 3)]
    assert account(engine, "A1")["contacts_active"] == 3


def test_a_bounced_contact_is_compared_with_its_source_row_again(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, contacts_csv=CONTACTS)
    sync(engine, cfg, now=NOW)
    with transaction(engine) as conn:
        hard_bounce(conn, "bo@a1.example", "550 no such user", NOW)
    assert digests(engine)["bo@a1.example"] is None
    assert counts(sync(engine, cfg, now=NOW + timedelta(hours=1))) == [(0, 0, 2), (0, 1, 1)]
    assert account(engine, "A1")["contacts_active"] == 2, "the source says active, as without digests"


def test_a_forgotten_contact_is_no_longer_counted_after_the_next_sync(engine: Engine, tmp_path: Path) -> None:
    sync(engine, config(tmp_path, contacts_csv=CONTACTS), now=NOW)
    forget(engine, "bo@a1.example", NOW)
    remaining = CONTACTS.replace("A1,bo@a1.example,active\n", "")
    report = sync(engine, config(tmp_path, contacts_csv=remaining), now=NOW + timedelta(hours=1))
    assert counts(report) == [(0, 0, 2), (0, 0, 1)]
    assert account(engine, "A1")["contacts_active"] == 1
