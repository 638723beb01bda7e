"""`playbookd health` and the health part of `explain`: scores as the current config computes them.

The numbers are recomputed from each account's synced data with the health section as it is now,
so they are what the next sync stores; after a sync they equal health_score and health_color.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.errors import UserError, did_you_mean
from playbookd.model.account import AccountRecord
from playbookd.model.health import COLORS, Health, HealthRules, compute
from playbookd.runtime import Runtime
from playbookd.store import health as H
from playbookd.store.accounts import get_account, iter_accounts, load_account_types
from playbookd.store.chunks import chunked
from playbookd.store.schema import health_history

Scored = tuple[AccountRecord, Health]


def rules_of(runtime: Runtime) -> HealthRules:
    if runtime.health is None:
        raise UserError(f"{runtime.config.path}: no health section; add one to score accounts (see the README)")
    return runtime.health


def scored(runtime: Runtime, engine: Engine, now: datetime, segment: str | None = None,
           account: str | None = None) -> Iterator[Scored]:
    """Accounts in id order (one with `account`, those of `segment` with it), each with its health."""
    rules = rules_of(runtime)
    if segment is not None and segment not in runtime.config.segment_names:
        names = runtime.config.segment_names
        raise UserError(f"unknown segment {segment!r}{did_you_mean(segment, names)}; segments are {', '.join(names)}")
    with engine.connect() as conn:
        types = load_account_types(conn)
        one = get_account(conn, account, types) if account is not None else None
    if account is not None and one is None:
        raise UserError(f"account {account!r} is not in the store (run `playbookd sync` first?)")
    records = [one] if one is not None else iter_accounts(engine, types)
    for record in records:
        if segment is None or record.get("segment") == segment:
            yield record, compute(rules, record, now)


@dataclass(frozen=True)
class Mover:
    account: str
    segment: str
    before: float | None
    now: float | None
    color: str | None

    @property
    def change(self) -> Decimal:
        if self.before is None or self.now is None:
            return Decimal(0)
        return Decimal(str(self.now)) - Decimal(str(self.before))


@dataclass
class Summary:
    since: date
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # segment -> colour (or "unscored") -> n
    movers: list[Mover] = field(default_factory=list)

    def columns(self) -> tuple[str, ...]:
        return (*COLORS, "unscored")


def summary(runtime: Runtime, engine: Engine, now: datetime, since: date, segment: str | None = None,
            limit: int = 10) -> Summary:
    """Colour counts per segment and the `limit` accounts whose score moved most from the start of `since`."""
    result = Summary(since)
    heap: list[tuple[Decimal, str, Mover]] = []
    for batch in chunked(scored(runtime, engine, now, segment)):
        with engine.connect() as conn:
            before = H.scores_before(conn, [r["id"] for r, _ in batch], since)
        for record, health in batch:
            result.counts.setdefault(str(record.get("segment")), Counter())[health.color or "unscored"] += 1
            if record["id"] not in before:
                continue  # not scored yet back then: no move to measure
            mover = Mover(record["id"], str(record.get("segment")), before[record["id"]],
                          None if health.score is None else float(health.score), health.color)
            if mover.change:
                heapq.heappush(heap, (abs(mover.change), record["id"], mover))
                if len(heap) > limit:
                    heapq.heappop(heap)
    result.movers = [m for _, _, m in sorted(heap, key=lambda item: (-item[0], item[1]))]
    return result


def recent_history(engine: Engine, account: str, limit: int = 10) -> list[dict[str, Any]]:
    """The account's latest days with a move, newest first."""
    query = (select(health_history).where(health_history.c.account_id == account)
             .order_by(health_history.c.day.desc()).limit(limit))
    with engine.connect() as conn:
        return [{"day": row.day.isoformat(), "score": row.score, "color": row.color, "high": row.high,
                 "low": row.low} for row in conn.execute(query)]


def breakdown_lines(health: Health) -> list[str]:
    """The breakdown as `explain` prints it: one line per measure."""
    head = "not scored: every measure is missing" if health.score is None else f"{health.score} ({health.color})"
    lines = [f"Health {head}"]
    for m in health.measures:
        if m.score is None:
            lines.append(f"  {m.name}: left out (value {shown(m.value)})")
        else:
            lines.append(f"  {m.name}: {float(m.score):g} x {m.weight}% (value {shown(m.value)})")
    return lines


def shown(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, dict):
        return ", ".join(f"{k} {shown(v)}" for k, v in value.items())
    return str(value)
