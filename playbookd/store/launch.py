"""Launch state in the store: statuses set by `playbookd playbooks pause|resume`, and the ramp's waiting list.

A status set in the database stands while the playbook's file still says what it said when the
status was set (`yaml_status`): the latest decision wins, whether it was a command or an edit.
Only `live` and `paused` can be set this way; `draft` and `retired` are decisions for the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from playbookd.model.launch import HOLDING
from playbookd.model.steps import Playbook
from playbookd.store.database import upsert
from playbookd.store.schema import launch_queue, playbook_states

SETTABLE = ("live", "paused")


def effective(yaml_status: str, row: Row[Any] | None) -> str:
    """The status a playbook acts by: its file's, unless a command set another since the file last changed."""
    if row is None or row.status is None or yaml_status not in SETTABLE or row.yaml_status != yaml_status:
        return yaml_status
    return str(row.status)


def rows(conn: Connection) -> dict[str, Row[Any]]:
    return {r.playbook_id: r for r in conn.execute(select(playbook_states))}


def statuses(playbooks: Iterable[Playbook], conn: Connection) -> dict[str, str]:
    found = rows(conn)
    return {p.id: effective(p.status, found.get(p.id)) for p in playbooks}


def holding(playbooks: Iterable[Playbook], conn: Connection) -> list[str]:
    """Playbooks whose enrollments wait and whose queued mail and webhooks stay queued."""
    return sorted(pid for pid, status in statuses(playbooks, conn).items() if status in HOLDING)


def wait(conn: Connection, entries: Sequence[dict[str, Any]], now: datetime) -> None:
    """Put accounts on a playbook's waiting list, or mark them as still qualifying: the first
    `qualified_at` stays, so the order is the order they first qualified."""
    unique = {(e["playbook_id"], e["account_id"]): e for e in entries}  # one row may be named once per statement
    upsert(conn, launch_queue, ["playbook_id", "account_id"],
           [{**e, "event_id": e.get("event_id"), "qualified_at": now, "seen_at": now} for e in unique.values()],
           only=["seen_at", "segment"])
