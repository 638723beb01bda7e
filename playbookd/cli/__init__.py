"""Command line."""

from playbookd.cli.commands import main

__all__ = ["main"]
