"""What an operator may do from the console, each written to the audit log with the user.

Task changes go through the same function as `playbookd tasks done|dismiss|snooze|reassign|reopen`
(cadence.tasks.change): one transaction, audited with the user and mirrored to `tasks.webhook`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy.engine import Engine

from playbookd.cadence import tasks
from playbookd.config.settings import Config
from playbookd.delivery.operator import outbox_decide
from playbookd.engine import statuses
from playbookd.errors import UserError
from playbookd.model.launch import declared
from playbookd.store import audit
from playbookd.store.database import transaction, utcnow

TASK_ACTIONS = ("done", "dismiss", "snooze", "reassign", "reopen")
OUTBOX_ACTIONS = ("resend", "drop")
PLAYBOOK_ACTIONS = {"pause": "paused", "resume": "live"}


def change_tasks(config: Config, engine: Engine, ids: Sequence[int], action: str, user: str, *,
                 until: datetime | None = None, assignee: str | None = None, note: str | None = None) -> str:
    """Done, dismiss, snooze (until), reassign (assignee) or reopen tasks, as `playbookd tasks <action>` does."""
    if action not in TASK_ACTIONS:
        raise UserError(f"unknown task action {action!r}; use one of {', '.join(TASK_ACTIONS)}")
    changes = tasks.change(engine, ids, cast(tasks.Action, action), note=note, user=user, now=utcnow(),
                           settings=config.tasks, until=until, assignee=assignee)
    return "; ".join(change.line() for change in changes)


def decide_messages(engine: Engine, ids: Sequence[int], action: str, user: str) -> str:
    if action not in OUTBOX_ACTIONS:
        raise UserError(f"unknown outbox action {action!r}")
    if not ids:
        raise UserError("choose at least one message")
    return outbox_decide(engine, ids, action, user=user)


def set_playbook(config: Config, engine: Engine, playbook_id: str, action: str, user: str, at: datetime) -> str:
    """Pause or resume, as `playbookd playbooks pause|resume` does (its audit entry says `status_set`);
    this adds who did it."""
    wanted = PLAYBOOK_ACTIONS.get(action)
    if wanted is None:
        raise UserError(f"unknown playbook action {action!r}")
    found = statuses.find(declared(Path(config.playbooks)), playbook_id)
    said = statuses.set_status(engine, found, wanted, at, f"console: {user}")
    with transaction(engine) as conn:
        audit.record(conn, "console_action", playbook_id=playbook_id, reason=action, at=at,
                     detail={"user": user, "result": said})
    return said
