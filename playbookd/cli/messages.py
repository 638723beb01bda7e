"""`playbookd suppress` and `playbookd outbox`: who gets nothing, and the messages an operator decides on."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.engine import Engine

from playbookd.cli import actions, output
from playbookd.cli.options import config_option
from playbookd.config.settings import load_config
from playbookd.delivery import operator
from playbookd.store.database import connect


def _engine(path: Path) -> Engine:
    return connect(load_config(path).database)


@click.group("suppress")
def suppress_group() -> None:
    """Addresses that get no email (per category, or all)."""


@suppress_group.command("add")
@config_option
@click.argument("email")
@click.option("--category", default="*", show_default=True, help="Category, or * for everything.")
@click.option("--note", help="Why.")
def suppress_add(config_path: Path, email: str, category: str, note: str | None) -> None:
    """Stop emailing EMAIL."""
    click.echo(actions.suppress_add(_engine(config_path), email, category, note))


@suppress_group.command("remove")
@config_option
@click.argument("email")
@click.option("--category", default="*", show_default=True)
def suppress_remove(config_path: Path, email: str, category: str) -> None:
    """Allow emailing EMAIL again."""
    click.echo(actions.suppress_remove(_engine(config_path), email, category))


@suppress_group.command("list")
@config_option
def suppress_list(config_path: Path) -> None:
    """List suppressed addresses."""
    output.echo_suppressions(_engine(config_path))


@click.group("outbox")
def outbox_group() -> None:
    """Messages: list them; resend or drop those whose delivery is unknown or failed."""


@outbox_group.command("list")
@config_option
@click.option("--state", "states", multiple=True, help="Only this state (repeatable): queued, sent, unknown ...")
@click.option("--account", help="Only this account: its timeline of messages.")
@click.option("--limit", default=200, show_default=True)
def outbox_list(config_path: Path, states: tuple[str, ...], account: str | None, limit: int) -> None:
    """The outbox, oldest first."""
    output.echo_outbox(_engine(config_path), states, limit, account)


@outbox_group.command("show")
@config_option
@click.argument("message_id", type=int)
def outbox_show(config_path: Path, message_id: int) -> None:
    """One message: its headers, state and text body (or why the body is gone)."""
    output.echo_message(_engine(config_path), message_id)


@outbox_group.command("resend")
@config_option
@click.argument("ids", nargs=-1, type=int, required=True)
def outbox_resend(config_path: Path, ids: tuple[int, ...]) -> None:
    """Queue messages again (for `unknown`: only when you know they did not arrive)."""
    click.echo(operator.outbox_decide(_engine(config_path), ids, "resend"))


@outbox_group.command("drop")
@config_option
@click.argument("ids", nargs=-1, type=int, required=True)
def outbox_drop(config_path: Path, ids: tuple[int, ...]) -> None:
    """Give up on messages for good."""
    click.echo(operator.outbox_decide(_engine(config_path), ids, "drop"))
