"""`playbookd health`: colours per segment and the biggest movers, one account's breakdown, or JSON lines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click
from sqlalchemy.engine import Engine

from playbookd.cli.output import table
from playbookd.engine import health as report
from playbookd.runtime import Runtime


def echo_health(rt: Runtime, engine: Engine, now: datetime, segment: str | None, account: str | None,
                since: datetime | None, fmt: str) -> None:
    if fmt == "json":
        for record, health in report.scored(rt, engine, now, segment, account):
            click.echo(json.dumps(health.as_json(record["id"], record.get("segment")), ensure_ascii=False))
        return
    if account is not None:
        return _breakdown(rt, engine, now, account)
    day = (since or now - timedelta(days=30)).astimezone(rt.config.tz).date()
    found = report.summary(rt, engine, now, day, segment)
    columns = found.columns()
    rows = [(name, *(n[c] for c in columns), sum(n.values())) for name, n in sorted(found.counts.items())]
    table(("SEGMENT", *(c.upper() for c in columns), "TOTAL"), rows)
    click.echo(f"\nBiggest movers since {day.isoformat()}:")
    if not found.movers:
        click.echo("  none")
        return
    table(("ACCOUNT", "SEGMENT", "THEN", "NOW", "CHANGE", "COLOR"),
          [(m.account, m.segment, _num(m.before), _num(m.now), f"{m.change:+}", m.color or "-") for m in found.movers])


def _breakdown(rt: Runtime, engine: Engine, now: datetime, account: str) -> None:
    record, health = next(report.scored(rt, engine, now, account=account))
    head = "not scored (every measure is missing)" if health.score is None else f"{health.score}, {health.color}"
    click.echo(f"Account {account} (segment {record.get('segment')}): health {head}\n")
    table(("MEASURE", "VALUE", "SCORE", "WEIGHT"),
          [(m.name, report.shown(m.value), "left out" if m.score is None else f"{float(m.score):g}", f"{m.weight}%")
           for m in health.measures])
    days = report.recent_history(engine, account)
    if days:
        click.echo("\nDays the score moved (newest first):")
        table(("DAY", "SCORE", "COLOR", "HIGHEST", "LOWEST"),
              [(d["day"], _num(d["score"]), d["color"] or "-", _num(d["high"]), _num(d["low"])) for d in days])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
