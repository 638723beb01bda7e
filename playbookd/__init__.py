"""playbookd: tech-touch customer success playbooks.

The package is layered along the data flow; each layer imports only from those above it in
this list (checked by import-linter in `make test`):

- `errors`: the one error hierarchy, located problems, did-you-mean hints.
- `config`: config.yaml settings, durations, YAML with line and column, time zones.
- `model`: fields and typing, account records, the condition language and its reference
  evaluation, playbooks and their steps.
- `store`: the database (SQLite or PostgreSQL), schema and migrations, account reads and
  writes, audit log, small state, leases and advisory locks.
- `sources`: readers for csv, jsonl, sql and http sources.
- `sync`: one sync run: typing rows into records, accounts, contacts, events, segments.
- `templates`: email templates, front matter, the sandbox, filters, the text part.
- `runtime`: config, playbooks and templates loaded and validated together.
- `delivery`: the outbox, holds (quiet hours, frequency cap), transports, MIME messages,
  recipients, bounces, crash recovery, backoff, unsubscribe tokens, webhooks.
- `engine`: the rules engine, enrollment, evaluation ranges, explain, simulate.
- `cadence`: advancing enrollments through their steps.
- `service`: one cycle, the daemon, its scheduler, leadership, HTTP, metrics, systemd, logs.
- `cli`: the commands.

For use from Python: `load` a project's Runtime (raises ValidationError listing every problem),
then `simulate` who would enter which playbook or `explain` one account.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from playbookd.version import __version__

if TYPE_CHECKING:
    from playbookd.engine.explain import explain
    from playbookd.engine.simulate import simulate
    from playbookd.runtime import Runtime, load

# Imported on first use: the rules engine's worker processes import this package too, and need
# none of it.
_EXPORTS = {"Runtime": "playbookd.runtime", "load": "playbookd.runtime",
            "simulate": "playbookd.engine.simulate", "explain": "playbookd.engine.explain"}

__all__ = ["Runtime", "__version__", "explain", "load", "simulate"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'playbookd' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
