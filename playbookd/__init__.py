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

__version__ = "0.1.0"

from playbookd.engine.explain import explain
from playbookd.engine.simulate import simulate
from playbookd.runtime import Runtime, load

__all__ = ["Runtime", "__version__", "explain", "load", "simulate"]
