"""A lone surrogate ("\\ud800": JSON can spell it, UTF-8 cannot) in a JSON source's value or key is a
problem of its row, on SQLite and PostgreSQL: the rows around it land, the problem names the row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.schema import accounts, contacts, events
from playbookd.sync.run import sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BAD = "\ud800"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    # json.dumps writes the surrogate as the escape \ud800, which json.loads reads back as it is
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _synced(engine: Engine, tmp_path: Path) -> list[str]:
    _jsonl(tmp_path / "a.jsonl", [
        {"id": "A1", "name": "Acme"},
        {"id": "A2", "name": f"Be{BAD}ta"},
        {"id": "A3", "name": "Gamma", "notes": BAD},
        {"id": "A4", "name": "Delta", f"k{BAD}": 1},
        {"id": f"A{BAD}5", "name": "Eps"},
        {"id": "A6", "name": "Zeta"},
    ])
    _jsonl(tmp_path / "c.jsonl", [
        {"account_id": "A1", "email": "ok@acme.example", "first_name": "Ana"},
        {"account_id": "A1", "email": "name@acme.example", "first_name": f"An{BAD}a"},
        {"account_id": "A1", "email": "extra@acme.example", "title": f"x{BAD}"},
        {"account_id": "A1", "email": f"m{BAD}@acme.example"},
        {"account_id": f"A{BAD}", "email": "acct@acme.example"},
        {"account_id": "A6", "email": "last@acme.example", "first_name": "Cy"},
    ])
    _jsonl(tmp_path / "e.jsonl", [
        {"account_id": "A1", "name": "login", "id": "e1"},
        {"account_id": "A1", "name": f"log{BAD}in", "id": "e2"},
        {"account_id": "A1", "name": "nps", "id": "e3", "score": BAD},
        {"account_id": "A6", "name": "nps", "id": "e4", "score": 9},
    ])
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": [
        {"name": "crm", "kind": "jsonl", "entity": "accounts", "path": str(tmp_path / "a.jsonl")},
        {"name": "people", "kind": "jsonl", "entity": "contacts", "path": str(tmp_path / "c.jsonl")},
        {"name": "usage", "kind": "jsonl", "entity": "events", "path": str(tmp_path / "e.jsonl")}]})
    cfg.path = tmp_path / "config.yaml"
    report = sync(engine, cfg, now=NOW)
    assert [s.failure for s in report.sources] == [None, None, None]
    return [str(p) for s in report.sources for p in s.problems]


def test_a_lone_surrogate_is_a_problem_of_its_row_alone(engine: Engine, tmp_path: Path) -> None:
    problems = _synced(engine, tmp_path)
    a, c, e = (tmp_path / name for name in ("a.jsonl", "c.jsonl", "e.jsonl"))
    assert problems == [
        f"{a}:2: account A2: name: contains an unpaired surrogate (U+D800), which is not valid Unicode",
        f"{a}:3: account A3: notes: contains an unpaired surrogate (U+D800), which is not valid Unicode",
        f"{a}:4: account A4: column 'k\\ud800': its name contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{a}:5: account 'A\\ud8005': id contains an unpaired surrogate (U+D800), which is not valid Unicode",
        f"{c}:2: contact name@acme.example: first_name: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{c}:3: contact extra@acme.example: title: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{c}:4: contact 'm\\ud800@acme.example': not a deliverable address: contains an unpaired surrogate "
        "(U+D800), which is not valid Unicode",
        f"{c}:5: contact acct@acme.example: account_id: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{e}:2: event ? of account A1: name: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
        f"{e}:3: event nps of account A1: score: contains an unpaired surrogate (U+D800), "
        "which is not valid Unicode",
    ]
    with engine.connect() as conn:
        assert list(conn.execute(select(accounts.c.id).order_by(accounts.c.id)).scalars()) == ["A1", "A6"]
        assert list(conn.execute(select(contacts.c.email).order_by(contacts.c.position)).scalars()) == [
            "ok@acme.example", "last@acme.example"]
        assert list(conn.execute(select(events.c.dedupe_key).order_by(events.c.dedupe_key)).scalars()) == [
            "usage:e1", "usage:e4"]
        active = dict(conn.execute(select(accounts.c.id, accounts.c.data["contacts_active"].as_integer())).all())
    assert active == {"A1": 1, "A6": 1}
