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
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from playbookd.config.settings import Config
from playbookd.errors import ValidationError
from playbookd.model.account import decode_account
from playbookd.model.conditions import AnyField
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


def refresh(engine: Engine, config: Config, now: datetime, touched: Touched | None = None) -> HealthReport | None:
    """Recompute accounts' health (see above); None when health is not configured (nor was it)."""
    stored = state.get(engine, FINGERPRINT) or {}
    current = fingerprint(config)
    if current is None and stored.get("fingerprint") is None:
        return None
    rules = rules_for(engine, config)
    switched_on = stored.get("fingerprint") is None
    report = HealthReport()
    day = now.astimezone(config.tz).date()
    only = (sorted(touched.ids) if touched is not None and not touched.everything and rules is not None
            and rules.static and stored.get("fingerprint") == current else None)
    last = ""
    while True:
        with transaction(engine) as conn:
            rows = _chunk(conn, last) if only is None else _chunk_of(conn, only[:CHUNK])
            _rescore(conn, rows, rules, now, day, switched_on, report)
        if only is not None:
            only = only[CHUNK:]
            if not only:
                break
        elif len(rows) < CHUNK:
            break
        else:
            last = rows[-1].id
    with transaction(engine) as conn:
        if config.health is not None:
            H.prune(conn, day - timedelta(days=config.health.history_days))
    state.put(engine, FINGERPRINT, {"fingerprint": current, "at": now.isoformat()})
    return report if rules is not None else None


def _chunk(conn: Connection, last: str) -> list[Any]:
    return _locked(conn, _SCORED.where(accounts.c.id > last).order_by(accounts.c.id).limit(CHUNK))


def _chunk_of(conn: Connection, ids: list[str]) -> list[Any]:
    return _locked(conn, _SCORED.where(among(conn, accounts.c.id, ids)).order_by(accounts.c.id))


_SCORED = select(accounts.c.id, accounts.c.segment, accounts.c.data, accounts.c.changes, accounts.c.created_at)


def _locked(conn: Connection, query: Any) -> list[Any]:
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # a `set` step on another replica must not be overwritten
    return list(conn.execute(query))


def _rescore(conn: Connection, rows: list[Any], rules: HealthRules | None, now: datetime, day: date,
             switched_on: bool, report: HealthReport) -> None:
    types = load_account_types(conn)
    reads = rules.reads if rules is not None else frozenset()
    updates, moves = [], []
    for row in rows:
        data, changes = dict(row.data), dict(row.changes or {})
        if rules is None:
            values = _CLEARED  # health was switched off: its fields go, as no change
        else:
            record = decode_account(row.id, row.segment, {n: data[n] for n in reads if n in data}, {}, types)
            values = health_fields(rules, record, now)
            report.scored += 1
        first = switched_on or aware(row.created_at) == now
        before, color = data.get(HEALTH_SCORE), data.get(HEALTH_COLOR)
        if H.apply(data, changes, values, None if first or rules is None else now.isoformat()):
            updates.append({"id": row.id, "data": data, "changes": changes})
            if rules is not None:
                moves.append(H.Move(row.id, before, values[HEALTH_SCORE], values[HEALTH_COLOR]))
            if rules is not None and not first:
                report.moved += 1
                if (turned := values[HEALTH_COLOR]) != color and turned is not None:
                    report.turned[str(turned)] += 1
    update_rows(conn, accounts, "id", updates, increment=UNSEEN)
    H.record_moves(conn, moves, day, now)
