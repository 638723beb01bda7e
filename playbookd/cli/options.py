"""Options and values every command module shares: --config, --at, ISO moments."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from playbookd.config.settings import CONFIG_ENV
from playbookd.store.database import utcnow


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
