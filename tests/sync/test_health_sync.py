"""Health after every sync, on SQLite and PostgreSQL: scores and colours as fields, changes, daily history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.model.account import AccountRecord
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.schema import health_history
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
HEALTH = yaml.safe_load("""
measures:
  - {name: adoption, weight: 40, field: seat_utilization,
     bands: [{gte: 80, score: 100}, {gte: 50, score: 60}, {score: 20}]}
  - {name: sentiment, weight: 20, when: {nps: {gte: 9}}, score: 100, else: 40}
  - {name: support, weight: 20, field: open_escalations,
     bands: [{eq: 0, score: 100}, {lte: 2, score: 50}, {score: 0}]}
  - {name: csm_view, weight: 20, field: usage_fit, map: {"yes": 100, investigate: 50, "no": 0}}
colors:
  high_touch: {red: {lt: 60}, yellow: {lt: 80}}
  default:    {red: {lt: 40}, yellow: {lt: 70}}
""")
HEADER = "id,arr,seat_utilization,nps,open_escalations,usage_fit\n"


def config(tmp_path: Path, csv_text: str, health: Any = HEALTH) -> Config:
    (tmp_path / "a.csv").write_text(csv_text)
    data = {"company": {"postal_address": "1 Main St"}, "health": health,
            "segments": [{"name": "high_touch", "when": {"arr": {"gte": 100000}}}, {"name": "tech_touch"}],
            "sources": [{"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")}]}
    cfg = Config.model_validate(data)
    cfg.path = tmp_path / "config.yaml"
    return cfg


def account(engine: Engine, account_id: str) -> AccountRecord:
    with engine.connect() as conn:
        record = get_account(conn, account_id, load_account_types(conn))
    assert record is not None
    return record


def history(engine: Engine) -> list[tuple[Any, ...]]:
    query = select(health_history.c.account_id, health_history.c.day, health_history.c.score,
                   health_history.c.color, health_history.c.high, health_history.c.low)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(health_history.c.account_id,
                                                                  health_history.c.day))]


def run(engine: Engine, cfg: Config, at: datetime) -> SyncReport:
    report = sync(engine, cfg, now=at)
    assert report.ok, report.summary_lines()
    return report


def test_scores_are_fields_their_moves_are_changes_and_each_day_keeps_its_range(engine: Engine,
                                                                                 tmp_path: Path) -> None:
    report = run(engine, config(tmp_path, HEADER + "A,150000,90,10,0,yes\nB,5000,,,,\n"), NOW)
    assert report.health == "health: 2 account(s) scored, 0 moved"
    first = account(engine, "A")
    assert (first["health_score"], first["health_color"], first["_changes"]) == (100.0, "green", {})
    assert "health_score" not in account(engine, "B"), "every measure missing: no score, no colour"

    later = NOW + timedelta(days=3)
    report = run(engine, config(tmp_path, HEADER + "A,150000,55,10,3,investigate\nB,5000,,,,\n"), later)
    assert report.health == "health: 1 account(s) scored, 1 moved (1 turned red)", "B's inputs are as scored"
    moved = account(engine, "A")  # (60*40 + 100*20 + 0*20 + 50*20) / 100
    assert (moved["health_score"], moved["health_color"]) == (54.0, "red")
    assert moved["_changes"] == {"seat_utilization": 90, "open_escalations": 0, "usage_fit": "yes",
                                 "health_score": 100.0, "health_color": "green"}

    run(engine, config(tmp_path, HEADER + "A,150000,55,10,0,investigate\nB,5000,,,,\n"), later + timedelta(hours=2))
    day, next_day = NOW.date(), later.date()
    assert history(engine) == [("A", day, 100.0, "green", 100.0, 100.0),
                               ("A", next_day, 74.0, "yellow", 100.0, 54.0)]


def test_health_switched_on_scores_every_account_without_a_change(engine: Engine, tmp_path: Path) -> None:
    data = HEADER + "A,150000,20,3,4,no\n"
    run(engine, config(tmp_path, data, health=None), NOW)
    report = run(engine, config(tmp_path, data), NOW + timedelta(days=1))
    assert report.health == "health: 1 account(s) scored, 0 moved"
    record = account(engine, "A")
    assert (record["health_color"], record["_changes"]) == ("red", {})
    run(engine, config(tmp_path, data, health=None), NOW + timedelta(days=2))
    assert "health_color" not in account(engine, "A") and account(engine, "A")["_changes"] == {}


def test_a_column_with_a_reserved_name_is_refused_and_the_rest_synced(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, "id,arr,seat_utilization,health_score,contacts\nA,5000,90,12,4\n")
    report = sync(engine, cfg, now=NOW)
    found = [p.message for s in report.sources for p in s.problems]
    assert found == [
        "column 'health_score' is a reserved name: health_* fields are computed from config.yaml's health section; "
        "rename it in the source (its values are not synced)",
        "column 'contacts' is a reserved name (contacts, enrollment, globals and health_* mean something in conditions "
        "and templates); rename it in the source (its values are not synced)"]
    record = account(engine, "A")
    assert record["health_score"] == 100.0 and "contacts" not in record and record["seat_utilization"] == 90


def test_history_older_than_history_days_is_dropped(engine: Engine, tmp_path: Path) -> None:
    run(engine, config(tmp_path, HEADER + "A,5000,90,,,\n"), NOW)
    short = {**HEALTH, "history_days": 10}
    run(engine, config(tmp_path, HEADER + "A,5000,30,,,\n", health=short), NOW + timedelta(days=5))
    assert [row[1] for row in history(engine)] == [date(2026, 11, 2), date(2026, 11, 7)]
    run(engine, config(tmp_path, HEADER + "A,5000,60,,,\n", health=short), NOW + timedelta(days=11))
    assert [row[1] for row in history(engine)] == [date(2026, 11, 7), date(2026, 11, 13)]
