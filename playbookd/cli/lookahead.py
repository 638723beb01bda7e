"""`playbookd calendar` and the look-ahead in `explain`: what accounts will get, and when."""

from __future__ import annotations

from datetime import datetime

import click
from sqlalchemy.engine import Engine

from playbookd.cli.output import table
from playbookd.engine import calendar
from playbookd.runtime import Runtime

HEADERS = ("AT", "ACCOUNT", "PLAYBOOK", "STEP", "ACTION", "WHAT", "TO", "WHY")


def echo_calendar(rt: Runtime, engine: Engine, at: datetime, days: int, account: str | None, fmt: str) -> None:
    items = calendar.upcoming(rt, engine, at, days, account)
    if fmt == "json":
        for item in items:
            click.echo(calendar.as_json(item))
        return
    table(HEADERS, [item.row() for item in items])
    click.echo(f"\n{calendar.summary(items, at, days)}; exits, goals, caps and new data may change it")
