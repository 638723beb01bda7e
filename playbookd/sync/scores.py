"""After a sync: accounts' health_score and health_color recomputed from config.yaml's health section.

Every account, unless the scores read field values and segment alone (no clock, no history), the
health section is as at the last sync and the sync can name the accounts it wrote (sync.base
Touched: sources' rows, contacts' derived fields and segments, and accounts a playbook or a bounce
wrote since): then only those, as the others' inputs are as they were scored.

A move is a change that playbooks' `changed*` see, and a row in the day's history; an account's
first score is no change, nor is every account's first score when health is switched on (a
project adding health does not see all its red accounts "turn" red).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from playbookd.config.settings import Config
from playbookd.errors import ValidationError
from playbookd.model.account import decode_account, value_key
from playbookd.model.conditions import AnyField, leaves
from playbookd.model.health import HEALTH_COLOR, HEALTH_FIELDS, HEALTH_SCORE, HealthRules, health_fields
from playbookd.model.health_rules import build_rules
from playbookd.sources.base import SourceError
from playbookd.sources.registry import source_columns
from playbookd.store import health as H
from playbookd.store import state
from playbookd.store.accounts import among, load_account_types
from playbookd.store.bulk import update_rows
from playbookd.store.chunks import CHUNK
from playbookd.store.database import aware, transaction
from playbookd.store.marks import UNSEEN
from playbookd.store.schema import accounts
from playbookd.sync.base import Touched

FINGERPRINT = "health_config"
_CLEARED = dict.fromkeys(HEALTH_FIELDS)


@dataclass
class HealthReport:
    scored: int = 0
    moved: int = 0
    turned: Counter[str] = field(default_factory=Counter)  # accounts whose colour changed, by new colour

    def line(self) -> str:
        turned = ", ".join(f"{count} turned {color}" for color, count in sorted(self.turned.items()))
        return f"health: {self.scored} account(s) scored, {self.moved} moved" + (f" ({turned})" if turned else "")


def fingerprint(config: Config) -> str | None:
    if config.health is None:
        return None
    text = json.dumps({"health": config.health.model_dump(mode="json", by_alias=True),
                       "segments": config.segment_names, "timezone": config.timezone}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def rules_for(engine: Engine, config: Config) -> HealthRules | None:
    if config.health is None:
        return None
    with engine.connect() as conn:
        types: dict[str, str | None] = {**load_account_types(conn)}
    for source in config.sources:
        if source.entity == "accounts":
            try:
                types = {**dict.fromkeys(source_columns(source)), **types}
            except SourceError:
                continue  # its own run reports it
    types.update(config.custom_fields)
    rules, problems = build_rules(config.health, AnyField(types), config.tz, str(config.path))
    if problems:
        raise ValidationError(problems, f"{config.path}: health: bad measure")
    return rules


def refresh(engine: Engine, config: Config, now: datetime, touched: Touched | None = None,
            inline: Inline | None = None) -> HealthReport | None:
    """Recompute accounts' health (see above); None when health is not configured (nor was it).
    The accounts `touched.scored` were scored in the sync's own writes (`inline`), and are skipped."""
    stored = state.get(engine, FINGERPRINT) or {}
    current = fingerprint(config)
    if current is None and stored.get("fingerprint") is None:
        return None
    rules = inline.rules if inline is not None and inline.prepared else rules_for(engine, config)
    alike = inline.alike if inline is not None and inline.prepared else Alike(rules, now)
    switched_on = stored.get("fingerprint") is None
    report = inline.report if inline is not None and rules is not None else HealthReport()
    if touched is not None and touched.lost:
        report.scored = 0  # every account scored in a write is scored again below: counted there
    day = now.astimezone(config.tz).date()
    scored = touched.scored if touched is not None and rules is not None else set()
    only = (sorted(touched.ids - scored) if touched is not None and not touched.everything and rules is not None
            and rules.static and stored.get("fingerprint") == current else None)
    last = ""
    while True:
        with transaction(engine) as conn:
            if only is None:
                ids = _next_ids(conn, last)
                rows = _chunk_of(conn, [i for i in ids if i not in scored])
            else:
                rows = _chunk_of(conn, only[:CHUNK])
            _rescore(conn, rows, alike, day, switched_on, report)
        if only is not None:
            only = only[CHUNK:]
            if not only:
                break
        elif len(ids) < CHUNK:
            break
        else:
            last = ids[-1]
    with transaction(engine) as conn:
        if config.health is not None:
            H.prune(conn, day - timedelta(days=config.health.history_days))
    state.put(engine, FINGERPRINT, {"fingerprint": current, "at": now.isoformat()})
    return report if rules is not None else None


def _next_ids(conn: Connection, last: str) -> list[str]:
    """The next chunk of account ids after `last`: ids alone, so the accounts the sync scored
    already (most, in a first sync) are skipped without reading their data."""
    query = select(accounts.c.id).where(accounts.c.id > last).order_by(accounts.c.id).limit(CHUNK)
    return list(conn.execute(query).scalars())


def _chunk_of(conn: Connection, ids: list[str]) -> list[Any]:
    if not ids:
        return []
    return _locked(conn, _SCORED.where(among(conn, accounts.c.id, ids)).order_by(accounts.c.id))


_SCORED = select(accounts.c.id, accounts.c.segment, accounts.c.data, accounts.c.changes, accounts.c.created_at)


def _locked(conn: Connection, query: Any) -> list[Any]:
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # a `set` step on another replica must not be overwritten
    return list(conn.execute(query))


def _rescore(conn: Connection, rows: list[Any], alike: Alike, day: date, switched_on: bool,
             report: HealthReport) -> None:
    types = load_account_types(conn)
    updates, moves = [], []
    for row in rows:
        data, changes = dict(row.data), dict(row.changes or {})
        first = switched_on or aware(row.created_at) == alike.now
        moved, move = _score(alike, types, report, (row.id, row.segment, data, changes), first)
        if moved:
            updates.append({"id": row.id, "data": data, "changes": changes})
        if move is not None:
            moves.append(move)
    update_rows(conn, accounts, "id", updates, increment=UNSEEN)
    H.record_moves(conn, moves, day, alike.now)


def _score(alike: Alike, types: dict[str, str], report: HealthReport,
           account: tuple[str, str, dict[str, Any], dict[str, Any]], first: bool) -> tuple[bool, H.Move | None]:
    """Health into one account's `data` and `changes` (in place): whether they moved, and the move
    for the day's history. `first`: the account's first score, which is no change."""
    account_id, segment, data, changes = account
    rules, now = alike.rules, alike.now
    if rules is None:
        values = _CLEARED  # health was switched off: its fields go, as no change
    else:
        values = alike(account_id, segment, data, types)
        report.scored += 1
    before, color = data.get(HEALTH_SCORE), data.get(HEALTH_COLOR)
    if not H.apply(data, changes, values, None if first or rules is None else now.isoformat()):
        return False, None
    if rules is None:
        return True, None
    if not first:
        report.moved += 1
        if (turned := values[HEALTH_COLOR]) != color and turned is not None:
            report.turned[str(turned)] += 1
    return True, H.Move(account_id, before, values[HEALTH_SCORE], values[HEALTH_COLOR])


class Alike:
    """health_fields of accounts alike computed once: when the rules read field values and segment
    alone (no clock, no history), accounts with the same values of the fields they name and the
    same segment score the same, and most accounts have a twin (a few fields, few values each)."""

    LIMIT = 50_000  # distinct inputs kept: past it, forgotten and scored again

    def __init__(self, rules: HealthRules | None, now: datetime) -> None:
        self.rules, self.now = rules, now
        names = set() if rules is None else set(rules.reads)
        for measure in rules.measures if rules is not None else ():
            tests = [measure.when, *(band.test for band in measure.bands)]
            names.update(leaf.field for test in tests if test is not None for leaf in leaves(test))
        self.names = sorted(names)
        self.reads = sorted(rules.reads) if rules is not None else []  # what a record is given, as before
        self.on = rules is not None and rules.static and "id" not in names
        self.found: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.types: tuple[str | None, ...] = ()

    def __call__(self, account_id: str, segment: str, data: Mapping[str, Any], types: Mapping[str, str]
                 ) -> dict[str, Any]:
        if not self.on:
            return self._fields(account_id, segment, data, types)
        if (kinds := tuple(types.get(n) for n in self.names)) != self.types:  # read otherwise: start again
            self.types = kinds
            self.found.clear()
        key = (segment, *(value_key(data.get(n)) for n in self.names))
        try:
            return dict(self.found[key])
        except KeyError:
            pass
        except TypeError:  # a list or an object in a field: not a key
            return self._fields(account_id, segment, data, types)
        values = self._fields(account_id, segment, data, types)
        if len(self.found) >= self.LIMIT:
            self.found.clear()
        self.found[key] = dict(values)
        return values

    def _fields(self, account_id: str, segment: str, data: Mapping[str, Any], types: Mapping[str, str]
                ) -> dict[str, Any]:
        assert self.rules is not None
        record = decode_account(account_id, segment, {n: data[n] for n in self.reads if n in data}, {}, types)
        return health_fields(self.rules, record, self.now)


class Inline:
    """Health scored in the write that gives an account its last inputs of a sync (its contacts'
    derived fields, sync.contacts), as `refresh` would score it after the sync (the same rules,
    clock and first score), which then skips it: a first sync wrote every account three times (its
    row, its contacts' count, its health), now twice."""

    def __init__(self, engine: Engine, config: Config, now: datetime) -> None:
        self.engine, self.config, self.now = engine, config, now
        self.day = now.astimezone(config.tz).date()
        self.report = HealthReport()
        self.rules: HealthRules | None = None
        self.alike = Alike(None, now)
        self.switched_on = False
        self.prepared = False  # `rules` are the sync's: `refresh` reads the sources' columns no more

    def prepare(self) -> None:
        if self.config.health is None or self.prepared:
            return
        try:
            self.rules = rules_for(self.engine, self.config)
        except ValidationError:
            return  # refresh reports it, after the sources synced as they did before
        self.alike = Alike(self.rules, self.now)
        self.switched_on = (state.get(self.engine, FINGERPRINT) or {}).get("fingerprint") is None
        self.prepared = True

    def __call__(self, conn: Connection, rows: list[dict[str, Any]], first: set[str],
                 types: dict[str, str]) -> bool:
        if self.rules is None:
            return False
        moves = []
        for row in rows:
            account = (row["id"], row["segment"], row["data"], row["changes"])
            _, move = _score(self.alike, types, self.report, account, self.switched_on or row["id"] in first)
            if move is not None:
                moves.append(move)
        H.record_moves(conn, moves, self.day, self.now)
        return True
