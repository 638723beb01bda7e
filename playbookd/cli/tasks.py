"""`playbookd tasks`: the CSM task queue listed, and tasks done, dismissed, snoozed, reassigned, reopened.

The changes themselves are cadence.tasks.change, which any other front end calls the same way.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from playbookd.cadence import tasks as work
from playbookd.cli.options import at_option, config_option, parse_at
from playbookd.cli.output import table
from playbookd.config.durations import parse_duration
from playbookd.config.settings import load_config
from playbookd.store.database import connect, utcnow


def _echo_table(found: list[work.Task], now: datetime) -> None:
    def due(task: work.Task) -> str:
        if task.due_at is None:
            return "-"
        late = task.state == "open" and task.due_at < now
        return task.due_at.strftime("%Y-%m-%d %H:%M") + (" (overdue)" if late else "")

    table(("ID", "DUE", "ASSIGNEE", "ACCOUNT", "PLAYBOOK", "STATE", "TITLE"),
          [(t.id, due(t), t.assignee or "-", t.account_id, t.playbook_id, t.state, t.title) for t in found])


@click.group("tasks", invoke_without_command=True)
@config_option
@click.option("--assignee", help="Only tasks for this CSM email.")
@click.option("--overdue", is_flag=True, help="Only open tasks past their due date.")
@click.option("--all", "show_all", is_flag=True, help="Include snoozed, done and dismissed tasks.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per task per line.")
@at_option
@click.pass_context
def tasks_group(ctx: click.Context, config_path: Path, assignee: str | None, overdue: bool, show_all: bool,
                fmt: str, at: str | None) -> None:
    """Tasks that playbooks created for CSMs: open ones, soonest due first (snoozed ones once the snooze
    ends). Subcommands change them: done, dismiss, snooze, reassign, reopen."""
    if ctx.invoked_subcommand is not None:
        return
    now = parse_at(at)
    found = work.list_tasks(connect(load_config(config_path).database), now=now, assignee=assignee,
                            overdue=overdue, include_closed=show_all)
    if fmt == "json":
        for task in found:
            click.echo(json.dumps(task.as_json(), sort_keys=True))
    else:
        _echo_table(found, now)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment (a container without a passwd entry)
        return os.environ.get("USER") or "unknown"


def _change_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
            config_option,
            click.argument("ids", nargs=-1, type=int, required=True, metavar="ID..."),
            click.option("--note", help="Why, for the history and the CRM."),
            click.option("--as", "user", metavar="NAME", help="Who does it (default: your login name)."))):
        func = option(func)
    return func


def _run(config_path: Path, ids: tuple[int, ...], action: work.Action, note: str | None, user: str | None,
         **extra: Any) -> None:
    config = load_config(config_path)
    changes = work.change(connect(config.database), ids, action, note=note, user=user or _os_user(), now=utcnow(),
                          settings=config.tasks, **extra)
    for done in changes:
        click.echo(done.line())


@tasks_group.command("done")
@_change_options
def done(config_path: Path, ids: tuple[int, ...], note: str | None, user: str | None) -> None:
    """Mark tasks done (an `until_task_done` wait on one goes on at the next cycle)."""
    _run(config_path, ids, "done", note, user)


@tasks_group.command("dismiss")
@_change_options
def dismiss(config_path: Path, ids: tuple[int, ...], note: str | None, user: str | None) -> None:
    """Close tasks that need no doing (a duplicate, no longer relevant)."""
    _run(config_path, ids, "dismiss", note, user)


def _until(value: str) -> datetime:
    """`3d`, `12h` (from now) or an ISO 8601 moment."""
    try:
        return utcnow() + parse_duration(value)
    except ValueError:
        return parse_at(value)


@tasks_group.command("snooze")
@_change_options
@click.option("--until", "until", required=True, metavar="WHEN",
              help="A duration from now (3d, 12h) or an ISO 8601 date or datetime.")
def snooze(config_path: Path, ids: tuple[int, ...], note: str | None, user: str | None, until: str) -> None:
    """Hide tasks until a time; then they are open again."""
    _run(config_path, ids, "snooze", note, user, until=_until(until))


@tasks_group.command("reassign")
@_change_options
@click.option("--to", "assignee", required=True, metavar="EMAIL", help="The new assignee.")
def reassign(config_path: Path, ids: tuple[int, ...], note: str | None, user: str | None, assignee: str) -> None:
    """Give tasks to someone else; a refresh by a later enrollment keeps your choice."""
    _run(config_path, ids, "reassign", note, user, assignee=assignee)


@tasks_group.command("reopen")
@_change_options
def reopen(config_path: Path, ids: tuple[int, ...], note: str | None, user: str | None) -> None:
    """Open done, dismissed or snoozed tasks again."""
    _run(config_path, ids, "reopen", note, user)
