"""Command line: thin click commands, one call each; errors become exit codes here only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from playbookd.cadence.advance import end_by_operator, retry
from playbookd.cli import actions, lookahead, output
from playbookd.cli import launch as launch_output
from playbookd.cli.console import console_group
from playbookd.cli.health import echo_health
from playbookd.cli.messages import outbox_group, suppress_group
from playbookd.cli.options import at_option, config_option
from playbookd.cli.options import loaded as _loaded
from playbookd.cli.options import parse_at as _at
from playbookd.cli.tasks import tasks_group
from playbookd.config.settings import CONFIG_ENV, Config, load_config
from playbookd.delivery.forget import forget as erase
from playbookd.errors import PlaybookdError
from playbookd.model.addresses import lookup_form
from playbookd.service import cycle
from playbookd.service.daemon import start
from playbookd.store.database import connect, utcnow
from playbookd.version import __version__


def _config(path: Path) -> Config:
    return load_config(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="playbookd")
@click.option("--config", "config_path", type=click.Path(path_type=Path), metavar="PATH",
              help="Path to config.yaml, for every command (also accepted after the command).")
def cli(config_path: Path | None) -> None:
    """Tech-touch customer success playbooks: rules, cadences and email delivery."""
    if config_path is not None:
        # Each command reads PLAYBOOKD_CONFIG as its --config default, so this reaches all of them.
        os.environ[CONFIG_ENV] = str(config_path)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--accounts", default=300, show_default=True, help="Sample accounts to generate.")
def init(directory: Path, accounts: int) -> None:
    """Create a working project in DIRECTORY: config, playbooks, templates, sample data."""
    click.echo(actions.init_project(directory, accounts))


@cli.command()
@config_option
@click.option("--strict", is_flag=True, help="Warnings count as problems (exit 1).")
def validate(config_path: Path, strict: bool) -> None:
    """Check config, playbooks and templates together; report every problem."""
    summary, warnings = actions.validate(config_path, strict)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(summary)


@cli.command("sync")
@config_option
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
def sync_cmd(config_path: Path, sources: tuple[str, ...]) -> None:
    """Pull accounts, contacts and events from the configured sources."""
    rt, engine = _loaded(config_path)
    output.echo_sync(cycle.run_sync(rt, engine, list(sources) or None))


@cli.command()
@config_option
@at_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--playbook", "only", multiple=True, metavar="ID",
              help="Only this playbook, whatever its status: a draft is simulated as if live (repeatable).")
@click.option("--summary", is_flag=True, help="Counts per playbook, segment and first action, and the emails of "
              "each playbook's first cycle, with a warning over launch.warn_over.")
def simulate(config_path: Path, at: str | None, fmt: str, only: tuple[str, ...], summary: bool) -> None:
    """Show who would enter which playbook at --at, and their first step. Changes nothing."""
    rt, engine = _loaded(config_path)
    if summary:
        launch_output.echo_summary(rt, engine, _at(at), fmt, only)
        return
    output.echo_simulation(rt, engine, _at(at), fmt, only)


@cli.command()
@config_option
@click.argument("account")
@click.option("--playbook", help="Only this playbook.")
@at_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain(config_path: Path, account: str, playbook: str | None, at: str | None, fmt: str) -> None:
    """Explain, condition by condition, why ACCOUNT is or is not in each playbook."""
    rt, engine = _loaded(config_path)
    output.echo_explain(rt, engine, account, playbook, _at(at), fmt)


@cli.command()
@config_option
@click.option("--segment", help="Only accounts of this segment.")
@click.option("--account", help="One account's breakdown: each measure's value, score and weight.")
@click.option("--since", metavar="ISO", help="Movers from this date on (default: 30 days ago).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per account per line.")
def health(config_path: Path, segment: str | None, account: str | None, since: str | None, fmt: str) -> None:
    """Health scores: red, yellow and green per segment and the biggest movers, or one account's breakdown."""
    rt, engine = _loaded(config_path)
    echo_health(rt, engine, utcnow(), segment, account, _at(since) if since else None, fmt)


@cli.command()
@config_option
@click.argument("template")
@click.option("--account", required=True, help="Account id to render for.")
@click.option("--contact", help="Contact email (default: the account's primary contact).")
@click.option("--html", "show_html", is_flag=True, help="Print the HTML part instead of the text part.")
def preview(config_path: Path, template: str, account: str, contact: str | None, show_html: bool) -> None:
    """Render TEMPLATE for an account and contact, as the customer would get it."""
    rt, engine = _loaded(config_path)
    click.echo(actions.preview(rt, engine, template, account, contact, show_html))


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="Run one full cycle (sync, evaluate, advance, deliver) and exit.")
@at_option
def run(config_path: Path, once: bool, at: str | None) -> None:
    """Run the daemon (or one cycle with --once)."""
    if once:
        rt, engine = _loaded(config_path)
        output.echo_cycle(cycle.run_once(rt, engine, _at(at) if at else None))
        return
    if at:
        raise click.UsageError("--at only goes with --once")
    sys.exit(start(config_path).serve())


@cli.command()
@config_option
@click.option("--playbook", help="Only this playbook.")
@click.option("--since", metavar="ISO", help="Enrollments that entered at or after this moment.")
@click.option("--until", metavar="ISO", help="Enrollments that entered before this moment.")
@click.option("--segment", help="Only accounts of this segment (at entry).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--refresh", is_flag=True, help="Instead: recompute the figures the console shows (of --playbook, "
              "or of every playbook) now, as the daemon does every report.refresh_every.")
def report(config_path: Path, playbook: str | None, since: str | None, until: str | None, segment: str | None,
           fmt: str, refresh: bool) -> None:
    """Did it work? Per playbook: enrollments, emails, tasks, the goal; per group, with significance."""
    # here, not at the top: scipy takes seconds to import, and only this command needs it
    from playbookd.cli.report_output import echo_report
    from playbookd.report import results
    from playbookd.report.results import Scope

    rt, engine = _loaded(config_path)
    if refresh:
        if since or until or segment or fmt != "table":
            raise click.UsageError("--refresh computes the console's figures of all enrollments: it takes "
                                   "--playbook only")
        output.refresh(rt, engine, playbook)
        return
    scope = Scope(playbook, _at(since) if since else None, _at(until) if until else None, segment)
    echo_report(results.report(engine, scope, {p.id: p.goal is not None for p in rt.playbooks}), fmt)


@cli.command("send-test")
@config_option
@click.option("--to", "to_addr", required=True, help="Address to send the test email to.")
@click.option("--template", help="Template to render (default: a plain test message).")
@click.option("--account", help="Account to render the template for.")
def send_test(config_path: Path, to_addr: str, template: str | None, account: str | None) -> None:
    """Send one email through the configured transport, to check delivery settings."""
    rt, engine = _loaded(config_path)
    click.echo(actions.send_test(rt, engine, to_addr, template, account))


@cli.command()
@config_option
@click.argument("account")
@click.argument("name")
@click.option("--data", default="{}", help="Event data as a JSON object.")
@click.option("--id", "event_id", help="Idempotency key: an event with the same id is stored once.")
def event(config_path: Path, account: str, name: str, data: str, event_id: str | None) -> None:
    """Record an event NAME for ACCOUNT (event-triggered playbooks react to it)."""
    config = _config(config_path)
    click.echo(actions.add_event(connect(config.database), account, name, data, event_id))


@cli.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(config_path: Path, fmt: str) -> None:
    """Counts of accounts, enrollments and emails; each playbook's status; messages needing attention; last runs."""
    config = _config(config_path)
    engine = connect(config.database)
    playbooks = launch_output.playbooks_data(config, engine, utcnow())
    output.echo_status(engine, fmt, playbooks, [source.name for source in config.sources])
    if fmt == "text" and playbooks:
        click.echo("\nPlaybooks (`playbookd playbooks pause|resume ID` changes one):")
        launch_output.echo_playbooks(playbooks)


@cli.group("playbooks")
def playbooks_group() -> None:
    """Playbooks' statuses; pause and resume them in the database (the files may be read-only)."""


@playbooks_group.command("list")
@config_option
def playbooks_list(config_path: Path) -> None:
    """Each playbook's status, where it comes from, and its ramp."""
    config = _config(config_path)
    launch_output.echo_playbooks(launch_output.playbooks_data(config, connect(config.database), utcnow()))


@playbooks_group.command("pause")
@config_option
@click.argument("playbook_id", metavar="ID")
@click.option("--note", help="Why, for the history.")
@at_option
def playbooks_pause(config_path: Path, playbook_id: str, note: str | None, at: str | None) -> None:
    """Pause ID: no new entrants, its queued mail held, its waits frozen, until resumed."""
    click.echo(launch_output.set_status(_config(config_path), playbook_id, "paused", _at(at), note))


@playbooks_group.command("resume")
@config_option
@click.argument("playbook_id", metavar="ID")
@click.option("--note", help="Why, for the history.")
@at_option
def playbooks_resume(config_path: Path, playbook_id: str, note: str | None, at: str | None) -> None:
    """Make ID live again: its waits go on with the time they had left, its held mail goes out."""
    click.echo(launch_output.set_status(_config(config_path), playbook_id, "live", _at(at), note))


@cli.command()
@config_option
@click.option("--account", help="Only this account.")
@click.option("--playbook", help="Only this playbook.")
@click.option("--contact", metavar="EMAIL", help="Only this person: what was queued, sent or skipped for them.")
@click.option("--limit", default=200, show_default=True)
def history(config_path: Path, account: str | None, playbook: str | None, contact: str | None, limit: int) -> None:
    """The audit log: every decision, with its reason."""
    config = _config(config_path)
    output.echo_history(connect(config.database), account, playbook, limit, contact)


cli.add_command(tasks_group)


cli.add_command(suppress_group)
cli.add_command(outbox_group)


@cli.command()
@config_option
@at_option
def purge(config_path: Path, at: str | None) -> None:
    """Apply retention now: drop old message bodies (retention.bodies), delete old audit entries (retention.audit)."""
    rt, engine = _loaded(config_path)
    click.echo(cycle.apply_retention(rt, engine, _at(at)).line())


@cli.command()
@config_option
@click.argument("email")
def forget(config_path: Path, email: str) -> None:
    """Erase a person: their contact, their messages' content and their audit entries; they stay suppressed."""
    click.echo(erase(connect(_config(config_path).database), email, utcnow()).line(lookup_form(email)))


@cli.group("enrollments")
def enrollments_group() -> None:
    """Enrollments: list and show them, end them, run failed ones again once the cause is fixed."""


@enrollments_group.command("list")
@config_option
@click.option("--state", help="Only this state: active, failed, completed, exited.")
@click.option("--playbook", help="Only this playbook.")
@click.option("--account", help="Only this account.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--limit", default=500, show_default=True)
def enrollments_list(config_path: Path, state: str | None, playbook: str | None, account: str | None,
                     fmt: str, limit: int) -> None:
    """Enrollments, oldest first: where each account is in each playbook."""
    output.echo_enrollments(connect(_config(config_path).database), state, playbook, account, fmt, limit)


@enrollments_group.command("show")
@config_option
@click.argument("enrollment_id", type=int)
def enrollments_show(config_path: Path, enrollment_id: int) -> None:
    """One enrollment and everything that happened in it."""
    output.echo_enrollment(connect(_config(config_path).database), enrollment_id)


@enrollments_group.command("exit")
@config_option
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--note", required=True, help="Why, for the history (e.g. 'handled by phone').")
def enrollments_exit(config_path: Path, ids: tuple[int, ...], note: str) -> None:
    """End enrollments now; nothing more is sent for them."""
    count = end_by_operator(connect(_config(config_path).database), ids, note, utcnow())
    click.echo(f"ended {count} enrollment(s)")


@enrollments_group.command("retry")
@config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--playbook", help="Every failed enrollment of this playbook.")
def enrollments_retry(config_path: Path, ids: tuple[int, ...], playbook: str | None) -> None:
    """Run failed enrollments again from the step that failed, at the next cycle."""
    if bool(ids) == bool(playbook):
        raise click.UsageError("give enrollment IDs or --playbook, not both")
    count = retry(connect(_config(config_path).database), ids, playbook, utcnow())
    click.echo(f"retrying {count} enrollment(s)")


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path) -> None:
    """Create or upgrade the schema to the current version."""
    click.echo(actions.db_upgrade(_config(config_path).database))


@cli.command()
def settings() -> None:
    """Every config.yaml setting with its default and help."""
    output.echo_settings()


cli.add_command(console_group)
cli.add_command(lookahead.calendar)


def main() -> None:
    try:
        result = cli.main(prog_name="playbookd", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PlaybookdError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)

