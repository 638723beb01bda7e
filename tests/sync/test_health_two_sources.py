"""Health that reads contacts' derived fields with two contacts sources over the same accounts, on
SQLite and PostgreSQL: an account is scored with the count of all its contacts, never with the part
the first source gave (no move that never was, no stale score), and counted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.chunks import CHUNK
from playbookd.store.schema import accounts, health_history
from playbookd.sync import scores
from playbookd.sync.base import Touched
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
HEALTH = yaml.safe_load("""
measures:
  - {name: people, weight: 100, field: contacts_active, bands: [{gte: 2, score: 100}, {score: 30}]}
colors:
  default: {red: {lt: 40}, yellow: {lt: 70}}
""")
HEAD = "account_id,email,status\n"


def _config(tmp_path: Path, first: str, second: str) -> Config:
    (tmp_path / "a.csv").write_text("id,name\nA,Acme\nB,Beta\nC,Core\n")
    (tmp_path / "c1.csv").write_text(HEAD + first)
    (tmp_path / "c2.csv").write_text(HEAD + second)
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "health": HEALTH, "sources": [
        {"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")},
        {"name": "people", "kind": "csv", "entity": "contacts", "path": str(tmp_path / "c1.csv")},
        {"name": "more", "kind": "csv", "entity": "contacts", "path": str(tmp_path / "c2.csv")}]})
    cfg.path = tmp_path / "config.yaml"
    return cfg


def _run(engine: Engine, cfg: Config, at: datetime) -> SyncReport:
    report = sync(engine, cfg, now=at)
    assert report.ok, report.summary_lines()
    return report


def _health(engine: Engine) -> dict[str, tuple[object, ...]]:
    query = select(accounts.c.id, accounts.c.data, accounts.c.changes).order_by(accounts.c.id)
    with engine.connect() as conn:
        return {r.id: (r.data.get("contacts_active"), r.data.get("health_score"), r.data.get("health_color"),
                       {k: v for k, v in r.changes.items() if k.startswith("health")}) for r in conn.execute(query)}


def _history(engine: Engine) -> list[tuple[object, ...]]:
    query = select(health_history.c.account_id, health_history.c.day, health_history.c.score,
                   health_history.c.high, health_history.c.low)
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(query))


def test_a_count_the_second_source_completes_is_no_move(engine: Engine, tmp_path: Path) -> None:
    """A's two contacts leave in the first source and two others come in the second: A keeps its two
    active contacts, so its health never moved (no low of 30 for a `dropped_by` trend to see)."""
    _run(engine, _config(tmp_path, "A,a1@acme.example,active\nA,a2@acme.example,active\n", ""), NOW)
    later = NOW + timedelta(days=1)
    cfg = _config(tmp_path, "A,a1@acme.example,left\nA,a2@acme.example,left\n",
                  "A,a3@acme.example,active\nA,a4@acme.example,active\n")
    report = _run(engine, cfg, later)
    assert report.health == "health: 1 account(s) scored, 0 moved"
    assert _health(engine)["A"] == (2, 100.0, "green", {})
    assert [row for row in _history(engine) if row[0] == "A"] == [("A", NOW.date(), 100.0, 100.0, 100.0)]


def test_a_count_the_second_source_changes_in_an_earlier_chunk_is_scored(engine: Engine, tmp_path: Path) -> None:
    """A's first source scores it with one contact; the second gives it its second active contact in a
    chunk before A's last one there, which changes nothing: A is still scored with two."""
    others = "".join(f"B,b{i}@beta.example,active\n" for i in range(CHUNK - 1))
    cfg = _config(tmp_path, "A,a1@acme.example,active\n",
                  others + "A,a2@acme.example,active\nA,a3@acme.example,left\n")
    report = _run(engine, cfg, NOW)
    assert report.health == "health: 3 account(s) scored, 0 moved"
    assert _health(engine) == {"A": (2, 100.0, "green", {}), "B": (CHUNK - 1, 100.0, "green", {}),
                               "C": (0, 30.0, "red", {})}


def test_the_rules_read_each_accounts_source_once_a_sync(engine: Engine, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    columns = scores.source_columns

    def counted(source: object) -> list[str]:
        reads.append(source.name)  # type: ignore[attr-defined]
        return columns(source)  # type: ignore[arg-type]

    monkeypatch.setattr(scores, "source_columns", counted)
    _run(engine, _config(tmp_path, "A,a1@acme.example,active\n", "B,b1@beta.example,active\n"), NOW)
    assert reads == ["crm"]


def test_accounts_too_many_to_list_are_counted_once(engine: Engine, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past Touched.LIMIT the accounts scored in the write are scored again after it: counted once."""
    monkeypatch.setattr(Touched, "LIMIT", 1)
    cfg = _config(tmp_path, "", "A,a1@acme.example,active\nA,a2@acme.example,active\nB,b1@beta.example,active\n")
    report = _run(engine, cfg, NOW)
    assert report.health == "health: 3 account(s) scored, 0 moved"
    assert _health(engine) == {"A": (2, 100.0, "green", {}), "B": (1, 30.0, "red", {}), "C": (0, 30.0, "red", {})}


def test_a_count_two_sources_leave_as_it_was_is_no_change(engine: Engine, tmp_path: Path) -> None:
    """2 -> 0 (after the first source) -> 2 (after the second) is no change of contacts_active."""
    _run(engine, _config(tmp_path, "A,a1@acme.example,active\nA,a2@acme.example,active\n", ""), NOW)
    _run(engine, _config(tmp_path, "A,a1@acme.example,left\nA,a2@acme.example,left\n",
                         "A,a3@acme.example,active\nA,a4@acme.example,active\n"), NOW + timedelta(days=1))
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.changes).where(accounts.c.id == "A")).scalar() == {}
