"""Launch state in the store: statuses set by `playbookd playbooks pause|resume`, and the ramp's waiting list.

A status set in the database stands while the playbook's file still says what it said when the
status was set (`yaml_status`): the latest decision wins, whether it was a command or an edit.
Only `live` and `paused` can be set this way; `draft` and `retired` are decisions for the file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update

from playbookd.model.launch import HOLDING
from playbookd.model.steps import Playbook
from playbookd.store.chunks import chunked
from playbookd.store.database import upsert
from playbookd.store.marks import in_range
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


def keep_waiting(conn: Connection, playbook_ids: Sequence[str], looked_at: Collection[str],
                 id_range: tuple[str | None, str | None] | None, now: datetime) -> None:
    """An incremental evaluation at `now` did not look at the accounts outside `looked_at`: they qualify
    as before, so those waiting for these playbooks are marked seen (the sweep would drop them)."""
    if not playbook_ids:
        return
    query = select(launch_queue.c.playbook_id, launch_queue.c.account_id).where(
        launch_queue.c.playbook_id.in_(list(playbook_ids)), launch_queue.c.event_id.is_(None),
        launch_queue.c.seen_at < now)
    query = in_range(query, launch_queue.c.account_id, id_range)
    kept = [row for row in conn.execute(query) if row.account_id not in looked_at]
    for batch in chunked(kept, 500):
        conn.execute(update(launch_queue).where(launch_queue.c.playbook_id == bindparam("b_playbook"),
                                                launch_queue.c.account_id == bindparam("b_account"))
                     .values(seen_at=now), [{"b_playbook": r.playbook_id, "b_account": r.account_id} for r in batch])
