"""A sync of rows that did not change writes nothing for them; changed rows are written, with their change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import aware
from playbookd.store.schema import accounts, contacts
from playbookd.sync.run import sync

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)

ACCOUNTS = "id,arr,status\nA1,1000,active\nA2,2000,active\nA3,3000,active\n"
CONTACTS = ("account_id,email,first_name,role\nA1,ana@a1.example,Ana,admin\n"
            "A2,bo@a2.example,Bo,admin\nA3,cy@a3.example,Cy,admin\n")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config(tmp_path: Path, *sources: dict[str, Any]) -> Config:
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": list(sources)})
    cfg.path = tmp_path / "config.yaml"
    return cfg


def src(name: str, path: Path, entity: str = "accounts") -> dict[str, Any]:
    return {"name": name, "kind": "csv", "entity": entity, "path": str(path)}


def written(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        rows = [*conn.execute(select(accounts.c.id, accounts.c.synced_at)),
                *conn.execute(select(contacts.c.email, contacts.c.synced_at))]
    return {key: aware(at) for key, at in rows}


def test_unchanged_rows_are_not_rewritten_and_changed_ones_are(engine: Engine, tmp_path: Path) -> None:
    cfg = config(tmp_path, src("crm", write(tmp_path / "a.csv", ACCOUNTS)),
                 src("app", write(tmp_path / "c.csv", CONTACTS), "contacts"))
    sync(engine, cfg, now=NOW)
    again = sync(engine, cfg, now=LATER)
    assert [(s.inserted, s.updated, s.unchanged) for s in again.sources] == [(0, 0, 3), (0, 0, 3)]
    assert set(written(engine).values()) == {NOW}

    write(tmp_path / "a.csv", ACCOUNTS.replace("A2,2000", "A2,2500"))
    write(tmp_path / "c.csv", CONTACTS.replace("Cy,admin", "Cy,champion"))
    later = LATER + timedelta(hours=1)
    changed = sync(engine, cfg, now=later)
    assert [(s.updated, s.unchanged) for s in changed.sources] == [(1, 2), (1, 2)]
    assert {k for k, at in written(engine).items() if at == later} == {"A2", "cy@a3.example"}
    with engine.connect() as conn:
        a2 = get_account(conn, "A2", load_account_types(conn))
    assert a2 is not None and a2["arr"] == 2500 and a2["_changes"] == {"arr": 2000}
