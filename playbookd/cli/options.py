"""What several command modules share: the --config and --at options, ISO moments, loading a project."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from playbookd import runtime
from playbookd.config.settings import CONFIG_ENV, load_config
from playbookd.store.database import connect, utcnow


def parse_at(value: str | None) -> datetime:
    """An ISO 8601 date or datetime (UTC unless it says otherwise); None is now."""
    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


config_option = click.option("--config", "config_path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
                             default=Path("config.yaml"), show_default=True, help="Path to config.yaml.")
at_option = click.option("--at", "at", metavar="ISO", help="Evaluate as if it were this moment (default: now).")


def loaded(path: Path) -> tuple[runtime.Runtime, Any]:
    """The project's runtime, built against its database, and that database's engine."""
    config = load_config(path)
    engine = connect(config.database)
    return runtime.load(config=config, engine=engine), engine
