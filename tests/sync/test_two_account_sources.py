"""Two accounts sources over the same account ids (a CRM export and a billing export, each with some
of the fields), on SQLite and PostgreSQL: each keeps its own digest, so a sync of unchanged files
writes nothing; each one's fields survive the other's sync; an account one of them drops keeps what
the other gives; and a change is the one its source made, never one the other source's sync invents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.store.accounts import set_fields
from playbookd.store.database import transaction
from playbookd.store.marks import written
from playbookd.store.schema import accounts
from playbookd.sync.run import SyncReport, sync

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
CRM = "id,name,plan\nA,Acme,gold\nB,Beta,silver\nC,Core,bronze\n"
BILLING = "id,arr\nA,1000\nB,2000\nC,3000\n"
WRITE = re.compile(r"\s*(INSERT INTO|UPDATE|DELETE FROM) (accounts|account_digests|fields)\b", re.I)


def _config(tmp_path: Path, crm: str = CRM, billing: str = BILLING) -> Config:
    (tmp_path / "crm.csv").write_text(crm)
    (tmp_path / "billing.csv").write_text(billing)
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": [
        {"name": "crm", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "crm.csv")},
        {"name": "billing", "kind": "csv", "entity": "accounts", "path": str(tmp_path / "billing.csv")}]})
    cfg.path = tmp_path / "config.yaml"
    return cfg


def _sync(engine: Engine, cfg: Config, days: int) -> SyncReport:
    report = sync(engine, cfg, now=NOW + timedelta(days=days))
    assert report.ok, report.summary_lines()
    return report


@contextmanager
def _writes(engine: Engine) -> Iterator[list[str]]:
    """The writes of accounts, their fields and digests run meanwhile (the audit and each source's
    state record every sync)."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if WRITE.match(statement):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _accounts(engine: Engine) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    with engine.connect() as conn:
        return {r.id: (r.data, r.changes) for r in conn.execute(select(accounts.c.id, accounts.c.data,
                                                                       accounts.c.changes))}


def _seen_all(engine: Engine) -> None:
    """What an evaluation does: every account seen, its changes consumed."""
    with transaction(engine) as conn:
        conn.execute(accounts.update().values(unseen=0, changes={}))


def _counts(report: SyncReport) -> list[tuple[int, int, int]]:
    return [(s.inserted, s.updated, s.unchanged) for s in report.sources]


def test_a_third_sync_of_unchanged_files_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _sync(engine, cfg, 0)
    _sync(engine, cfg, 1)
    _seen_all(engine)
    with _writes(engine) as seen:
        report = _sync(engine, cfg, 2)
    assert seen == []
    assert _counts(report) == [(0, 0, 3), (0, 0, 3)]
    assert written(engine) == {}


def test_each_sources_fields_survive_the_others_sync(engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    _sync(engine, cfg, 0)
    _sync(engine, _config(tmp_path, billing=BILLING.replace("B,2000", "B,2500")), 1)
    data = {k: v[0] for k, v in _accounts(engine).items()}
    assert {k: (d["name"], d["plan"], d["arr"]) for k, d in data.items()} == {
        "A": ("Acme", "gold", 1000), "B": ("Beta", "silver", 2500), "C": ("Core", "bronze", 3000)}


def test_a_change_is_the_one_its_source_made(engine: Engine, tmp_path: Path) -> None:
    """B's arr moves in billing, A's plan in crm: one change each, and none for the source that did
    not move, over this sync and the next one of the same files."""
    _sync(engine, _config(tmp_path), 0)
    _seen_all(engine)
    cfg = _config(tmp_path, crm=CRM.replace("Acme,gold", "Acme,platinum"),
                  billing=BILLING.replace("B,2000", "B,2500"))
    report = _sync(engine, cfg, 1)
    assert _counts(report) == [(0, 1, 2), (0, 1, 2)]
    at = (NOW + timedelta(days=1)).isoformat()
    changes = {k: v[1] for k, v in _accounts(engine).items()}
    assert changes == {"A": {"plan": {"from": "gold", "at": at}}, "B": {"arr": {"from": 2000, "at": at}}, "C": {}}
    assert set(written(engine)) == {"A", "B"}
    _seen_all(engine)
    again = _sync(engine, cfg, 2)
    assert _counts(again) == [(0, 0, 3), (0, 0, 3)]
    assert {k: v[1] for k, v in _accounts(engine).items()} == {"A": {}, "B": {}, "C": {}}
    assert written(engine) == {}


def test_an_account_one_source_drops_keeps_what_the_other_gives(engine: Engine, tmp_path: Path) -> None:
    """C leaves billing alone: it is still crm's account, with the arr billing last gave (accounts are
    never removed by a sync), and nothing is written for it; billing giving it again is no change."""
    _sync(engine, _config(tmp_path), 0)
    _seen_all(engine)
    dropped = _config(tmp_path, billing=BILLING.replace("C,3000\n", ""))
    with _writes(engine) as seen:
        report = _sync(engine, dropped, 1)
    assert seen == []
    assert _counts(report) == [(0, 0, 3), (0, 0, 2)]
    assert _accounts(engine)["C"] == ({"contacts_active": 0, "name": "Core", "plan": "bronze", "arr": 3000}, {})
    report = _sync(engine, _config(tmp_path), 2)
    assert _counts(report) == [(0, 0, 3), (0, 0, 3)]
    assert written(engine) == {}


def test_an_account_only_the_second_source_gives_is_created_and_kept(engine: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path, billing=BILLING + "D,4000\n")
    assert _counts(_sync(engine, cfg, 0)) == [(3, 0, 0), (1, 3, 0)]
    _seen_all(engine)
    with _writes(engine) as seen:
        assert _counts(_sync(engine, cfg, 1)) == [(0, 0, 3), (0, 0, 4)]
    assert seen == []
    assert _accounts(engine)["D"][0] == {"contacts_active": 0, "arr": 4000}


def test_a_value_a_playbook_set_is_restored_by_the_source_that_supplies_it(engine: Engine,
                                                                           tmp_path: Path) -> None:
    """A `set` step writes B's arr and plan: the next sync of unchanged files gives both back, each
    from its own source (neither source's digest lets B skip)."""
    cfg = _config(tmp_path)
    _sync(engine, cfg, 0)
    _sync(engine, cfg, 1)
    with transaction(engine) as conn:
        set_fields(conn, "B", {"arr": 1, "plan": "none"}, NOW + timedelta(days=1, hours=1))
    _seen_all(engine)
    report = _sync(engine, cfg, 2)
    assert _counts(report) == [(0, 1, 2), (0, 1, 2)]
    data = _accounts(engine)["B"][0]
    assert (data["arr"], data["plan"]) == (2000, "silver")


def test_a_field_both_sources_give_is_the_later_ones(engine: Engine, tmp_path: Path) -> None:
    """Both give `plan`: billing, after crm in the configuration, has the last word at every sync, also
    when only crm's value moved (billing's unchanged row is compared again, not skipped)."""
    billing = "id,arr,plan\nA,1000,gold\nB,2000,silver\nC,3000,bronze\n"
    _sync(engine, _config(tmp_path, billing=billing), 0)
    _seen_all(engine)
    report = _sync(engine, _config(tmp_path, crm=CRM.replace("Acme,gold", "Acme,platinum"), billing=billing), 1)
    assert _counts(report) == [(0, 1, 2), (0, 1, 2)]
    assert _accounts(engine)["A"] == ({"contacts_active": 0, "name": "Acme", "plan": "gold", "arr": 1000}, {})
