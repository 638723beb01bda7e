"""`playbookd console add-user|remove-user|users`: the console's users file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from playbookd.cli.output import table
from playbookd.config.settings import CONFIG_ENV, load_config
from playbookd.console.users import ROLES, add_user, read_users, remove_user
from playbookd.errors import UserError

config_option = click.option("--config", "config_path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
                             default=Path("config.yaml"), show_default=True, help="Path to config.yaml.")


@click.group("console")
def console_group() -> None:
    """Users of the web console (console.users_file)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UserError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("give the password on standard input with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@console_group.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True,
              help="viewer: sees everything; operator: may also act (tasks, resend/drop, pause).")
@click.option("--password-stdin", "from_stdin", is_flag=True, help="Read the password from the first line of stdin.")
@config_option
def add(name: str, role: str, from_stdin: bool, config_path: Path) -> None:
    """Add a user, or replace one's role and password (sessions of the old password end)."""
    users_file = load_config(config_path).console.users_file
    click.echo(add_user(users_file, name, role, _password(from_stdin)))


@console_group.command("remove-user")
@click.argument("name")
@config_option
def remove(name: str, config_path: Path) -> None:
    """Remove a user; their sessions end at their next request."""
    click.echo(remove_user(load_config(config_path).console.users_file, name))


@console_group.command("users")
@config_option
def users(config_path: Path) -> None:
    """The console's users and their roles."""
    found = read_users(load_config(config_path).console.users_file)
    table(("USER", "ROLE"), [(u.name, u.role) for u in sorted(found.values(), key=lambda u: u.name)])
