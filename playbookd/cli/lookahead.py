"""`playbookd calendar`: what accounts will get, and when (`explain` shows one account's part of it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from sqlalchemy.engine import Engine

from playbookd.cli.options import at_option, config_option, loaded, parse_at
from playbookd.cli.output import table
from playbookd.engine import calendar as lookahead
from playbookd.runtime import Runtime

HEADERS = ("AT", "ACCOUNT", "PLAYBOOK", "STEP", "ACTION", "WHAT", "TO", "WHY")


def echo_calendar(rt: Runtime, engine: Engine, at: datetime, days: int, account: str | None, fmt: str) -> None:
    items = lookahead.upcoming(rt, engine, at, days, account)
    if fmt == "json":
        for item in items:
            click.echo(lookahead.as_json(item))
        return
    table(HEADERS, [item.row() for item in items])
    click.echo(f"\n{lookahead.summary(items, at, days)}; exits, goals, caps and new data may change it")


@click.command()
@config_option
@click.option("--account", help="Only this account.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(0, 366), help="How far ahead.")
@at_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def calendar(config_path: Path, account: str | None, days: int, at: str | None, fmt: str) -> None:
    """What each account will get and when, across every live playbook (quiet hours applied). Changes nothing."""
    rt, engine = loaded(config_path)
    echo_calendar(rt, engine, parse_at(at), days, account, fmt)
