"""What an operator may do from the console, each written to the audit log with the user.

Task changes go through `change_tasks`, the one place that will call the task-state functions
(done, dismiss, snooze, reassign, reopen) once they exist; until then it refuses with a clear
message, and the Tasks page says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.delivery.operator import outbox_decide
from playbookd.engine import statuses
from playbookd.errors import UserError
from playbookd.model.launch import declared
from playbookd.store import audit
from playbookd.store.database import transaction

TASK_ACTIONS = ("done", "dismiss", "snooze", "reassign", "reopen")
OUTBOX_ACTIONS = ("resend", "drop")
PLAYBOOK_ACTIONS = {"pause": "paused", "resume": "live"}


class NotAvailable(UserError):
    """An action this build of playbookd does not have yet."""


def change_tasks(engine: Engine, ids: Sequence[int], action: str, user: str, *, until: datetime | None = None,
                 assignee: str | None = None, note: str | None = None) -> str:
    """Done, dismiss, snooze (until), reassign (assignee) or reopen tasks, as `playbookd tasks <action>` does.
    Wire it to the tasks module's function when task states land; it records the user itself."""
    if action not in TASK_ACTIONS:
        raise UserError(f"unknown task action {action!r}; use one of {', '.join(TASK_ACTIONS)}")
    raise NotAvailable(f"task actions ({', '.join(TASK_ACTIONS)}) are not available in this version of "
                       f"playbookd; the tasks are shown read-only")


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
