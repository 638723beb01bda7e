"""Health that reads contacts' derived fields, on SQLite and PostgreSQL: scored in the write that
gives an account its contacts' count, as a score after the sync would be, and never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.chunks import CHUNK
from playbookd.store.schema import accounts, health_history
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
HEALTH = yaml.safe_load("""
measures:
  - {name: people, weight: 100, field: contacts_active, bands: [{gte: 2, score: 100}, {score: 30}]}
colors:
  default: {red: {lt: 40}, yellow: {lt: 70}}
""")


def _config(tmp_path: Path, people: str) -> Config:
    (tmp_path / "a.csv").write_text("id,name\nA,Acme\nB,Beta\nC,Core\n")
    (tmp_path / "c.csv").write_text("account_id,email,status\n" + people)
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "health": HEALTH, "sources": [
        {"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")},
        {"name": "people", "kind": "csv", "entity": "contacts", "path": str(tmp_path / "c.csv")}]})
    cfg.path = tmp_path / "config.yaml"
    return cfg


def _run(engine: Engine, cfg: Config, at: datetime) -> SyncReport:
    report = sync(engine, cfg, now=at)
    assert report.ok, report.summary_lines()
    return report


def _accounts(engine: Engine) -> dict[str, tuple[object, ...]]:
    query = select(accounts.c.id, accounts.c.data, accounts.c.changes, accounts.c.unseen).order_by(accounts.c.id)
    with engine.connect() as conn:
        return {r.id: (r.data.get("contacts_active"), r.data.get("health_score"), r.data.get("health_color"),
                       r.changes, r.unseen) for r in conn.execute(query)}


def _history(engine: Engine) -> list[tuple[object, ...]]:
    query = select(health_history.c.account_id, health_history.c.score, health_history.c.color,
                   health_history.c.high, health_history.c.low)
    query = query.order_by(health_history.c.account_id, health_history.c.day)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_a_first_sync_scores_health_with_the_contacts_count_and_writes_each_account_twice(
        engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path, "A,a1@acme.example,active\nA,a2@acme.example,active\nB,b1@beta.example,active\n")
    report = _run(engine, cfg, NOW)
    assert report.health == "health: 3 account(s) scored, 0 moved"
    # a new account's first count and first score are no change; `unseen` counts the writes: its
    # insert, then one update with its contacts' count and its health (C, without contacts, with its health)
    assert _accounts(engine) == {"A": (2, 100.0, "green", {}, 2), "B": (1, 30.0, "red", {}, 2),
                                 "C": (0, 30.0, "red", {}, 2)}
    assert _history(engine) == [("A", 100.0, "green", 100.0, 100.0), ("B", 30.0, "red", 30.0, 30.0),
                                ("C", 30.0, "red", 30.0, 30.0)]


def test_a_later_sync_moves_health_with_the_count_as_a_change(engine: Engine, tmp_path: Path) -> None:
    _run(engine, _config(tmp_path, "A,a1@acme.example,active\nA,a2@acme.example,active\n"
                                   "B,b1@beta.example,active\n"), NOW)
    later = NOW + timedelta(days=1)
    cfg = _config(tmp_path, "A,a1@acme.example,active\nA,a2@acme.example,left\n"
                            "B,b1@beta.example,active\nB,b2@beta.example,active\n")
    report = _run(engine, cfg, later)
    assert report.health == "health: 2 account(s) scored, 2 moved (1 turned green, 1 turned red)"
    found, at = _accounts(engine), later.isoformat()
    assert found["A"][:4] == (1, 30.0, "red", {"contacts_active": {"from": 2, "at": at},
                                               "health_score": {"from": 100.0, "at": at},
                                               "health_color": {"from": "green", "at": at}})
    assert found["B"][:4] == (2, 100.0, "green", {"contacts_active": {"from": 1, "at": at},
                                                  "health_score": {"from": 30.0, "at": at},
                                                  "health_color": {"from": "red", "at": at}})
    assert found["C"][:4] == (0, 30.0, "red", {})
    assert _history(engine) == [("A", 100.0, "green", 100.0, 100.0), ("A", 30.0, "red", 100.0, 30.0),
                                ("B", 30.0, "red", 30.0, 30.0), ("B", 100.0, "green", 100.0, 30.0),
                                ("C", 30.0, "red", 30.0, 30.0)]

    report = _run(engine, cfg, later + timedelta(hours=1))
    assert report.health == "health: 0 account(s) scored, 0 moved", "every row unchanged: nothing to rescore"


def test_an_account_whose_contacts_span_two_chunks_is_scored_with_its_whole_count(engine: Engine,
                                                                                  tmp_path: Path) -> None:
    """A's first contact closes a chunk, its second opens the next: its health is never scored
    with the count of one, which would leave a low of 30 in its history."""
    others = "".join(f"B,b{i}@beta.example,active\n" for i in range(CHUNK - 1))
    report = _run(engine, _config(tmp_path, others + "A,a1@acme.example,active\nA,a2@acme.example,active\n"), NOW)
    assert report.health == "health: 3 account(s) scored, 0 moved"
    assert _accounts(engine)["A"][:4] == (2, 100.0, "green", {})
    assert _history(engine) == [("A", 100.0, "green", 100.0, 100.0), ("B", 100.0, "green", 100.0, 100.0),
                                ("C", 30.0, "red", 30.0, 30.0)]
