"""An event row whose account_id, name or id cannot be stored is a problem of its row alone, on
SQLite and PostgreSQL: the other events land and the sync goes on to rescore health."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.schema import events
from playbookd.sync.run import sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BAD = "\ud800"


def _sync(engine: Engine, tmp_path: Path, rows: list[dict[str, Any]]) -> list[str]:
    (tmp_path / "a.csv").write_text("id,name\nA1,Acme\n")
    # json.dumps writes a lone surrogate as the escape \ud800, which json.loads reads back as it is
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": [
        {"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "a.csv")},
        {"name": "usage", "kind": "jsonl", "entity": "events", "path": str(tmp_path / "e.jsonl")}]})
    cfg.path = tmp_path / "config.yaml"
    report = sync(engine, cfg, now=NOW)
    assert [s.failure for s in report.sources] == [None, None]
    return [str(p) for s in report.sources for p in s.problems]


def _keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(events.c.dedupe_key).order_by(events.c.dedupe_key)).scalars())


def test_an_account_id_typing_refuses_is_a_problem_of_its_row(engine: Engine, tmp_path: Path) -> None:
    problems = _sync(engine, tmp_path, [
        {"account_id": "A1", "name": "login", "id": "e1"},
        {"account_id": {"x": 1}, "name": "login", "id": "e2"},
        {"account_id": f"A{BAD}", "name": "login", "id": "e3"},
        {"name": {"x": 1}, "id": "e4"},
        {"account_id": "A1", "name": "nps", "id": "e5"},
    ])
    e = tmp_path / "e.jsonl"
    assert problems == [
        f"{e}:2: event login of account ?: account_id: expected text, got dict",
        f"{e}:3: event login of account ?: account_id: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{e}:4: event ? of account ?: needs account_id and name; name: expected text, got dict",
    ]
    assert _keys(engine) == ["usage:e1", "usage:e5"]


def test_an_event_id_with_a_lone_surrogate_is_a_problem_of_its_row(engine: Engine, tmp_path: Path) -> None:
    problems = _sync(engine, tmp_path, [
        {"account_id": "A1", "name": "login", "id": "e1"},
        {"account_id": "A1", "name": "login", "id": f"e{BAD}2"},
        {"account_id": "A1", "name": "nps", "id": "e3"},
    ])
    assert problems == [f"{tmp_path / 'e.jsonl'}:2: event login of account A1: id contains an unpaired "
                        "surrogate (U+D800), which is not valid Unicode"]
    assert _keys(engine) == ["usage:e1", "usage:e3"]
