"""What a task's life tells the world: its webhook to a CRM, and the waits that end when it is closed.

Every version of a task (created, refreshed, done, dismissed, snoozed, reassigned, reopened) is queued
into the webhooks table that webhook steps use, so it goes out with the same retries and backoff; the
key `task:<id>:<revision>` is its Idempotency-Key, and `revision` lets a receiver drop an older version
that a retry delivered after a newer one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.engine import Engine

from playbookd.config.tasks import Tasks
from playbookd.delivery.webhooks import TASK_KIND
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.schema import enrollments, tasks, webhooks

OPEN, SNOOZED, DONE, DISMISSED = "open", "snoozed", "done", "dismissed"
CLOSED = (DONE, DISMISSED)
EVENTS = ("created", "refreshed", "done", "dismissed", "snoozed", "reassigned", "reopened")
WAIT_ENDED = "wait_ended"  # an until_task_done wait ended early: its task was closed
log = logging.getLogger("playbookd.tasks")


def _iso(value: datetime | None) -> str | None:
    moment = aware(value)
    return moment.isoformat() if moment is not None else None


def payload(row: Row[Any], event: str, at: datetime, note: str | None, user: str | None) -> dict[str, Any]:
    """The JSON a CRM gets for one version of a task (documented in the README)."""
    return {
        "event": event, "task": row.id, "key": row.key, "revision": row.revision, "playbook": row.playbook_id,
        "account": row.account_id, "enrollment": row.enrollment_id, "step": row.step_key, "title": row.title,
        "assignee": row.assignee, "due_at": _iso(row.due_at), "state": row.state,
        "snoozed_until": _iso(row.snoozed_until), "note": note, "user": user, "at": at.isoformat(),
    }


def announce(conn: Connection, task_id: int, event: str, at: datetime, settings: Tasks, *,
             note: str | None = None, user: str | None = None) -> None:
    """Queue this version of the task for `tasks.webhook`, in the caller's transaction (so a change and
    its webhook are stored together or not at all)."""
    if settings.webhook is None:
        return
    row = conn.execute(select(tasks).where(tasks.c.id == task_id)).one()
    insert_ignore(conn, webhooks, [{
        "key": f"task:{row.id}:{row.revision}", "kind": TASK_KIND, "account_id": row.account_id,
        "playbook_id": row.playbook_id, "enrollment_id": row.enrollment_id, "url": settings.webhook.url,
        "body": payload(row, event, at, note, user), "state": "queued", "attempts": 0, "not_before": at,
        "created_at": at}])


def task_closed(conn: Connection, enrollment_id: int, step_key: str | None) -> int | None:
    """The id of the enrollment's task of step `step_key` if it is done or dismissed, else None."""
    if step_key is None:
        return None
    found = conn.execute(select(tasks.c.id).where(tasks.c.enrollment_id == enrollment_id,
                                                   tasks.c.step_key == step_key,
                                                   tasks.c.state.in_(CLOSED))).first()
    return None if found is None else int(found.id)


def _waiting(conn: Connection, held: list[str], now: datetime) -> list[Row[Any]]:
    """Active enrollments in a wait whose enrollment has a closed task: the candidates to wake."""
    return list(conn.execute(
        select(enrollments.c.id, enrollments.c.playbook_id, enrollments.c.account_id, enrollments.c.step,
               enrollments.c.step_key, tasks.c.id.label("task_id"), tasks.c.step_key.label("task_step"),
               tasks.c.state.label("task_state"))
        .join(tasks, tasks.c.enrollment_id == enrollments.c.id)
        .where(enrollments.c.state == "active", enrollments.c.next_due_at > now, tasks.c.state.in_(CLOSED),
               enrollments.c.playbook_id.not_in(held))
        .order_by(enrollments.c.id)))


def _awaits(playbook: Playbook | None, row: Row[Any]) -> bool:
    """Whether the wait the enrollment is in (the step before its next one) waits for this task."""
    if playbook is None:
        return False
    index, _ = playbook.position(row.step, row.step_key)
    return row.task_step is not None and playbook.awaited_task(index - 1) == row.task_step


def _wake(engine: Engine, row: Row[Any], now: datetime) -> bool:
    with transaction(engine) as conn:
        woken = conn.execute(update(enrollments).where(
            enrollments.c.id == row.id, enrollments.c.state == "active", enrollments.c.next_due_at > now,
            enrollments.c.step == row.step).values(next_due_at=now)).rowcount
        if woken:
            audit.record(conn, WAIT_ENDED, account_id=row.account_id, playbook_id=row.playbook_id,
                         enrollment_id=row.id, step=row.step - 1, reason=f"task_{row.task_state}",
                         detail={"task": row.task_id}, at=now)
    return bool(woken)


def wake_waits(runtime: Runtime, engine: Engine, now: datetime) -> int:
    """End the `until_task_done` waits whose task was closed (by the CLI, the console, anyone): those
    enrollments are due now. Waits of paused or draft playbooks stay frozen. Returns how many woke."""
    with engine.connect() as conn:
        held = launch.holding(runtime.playbooks, conn)
        rows = _waiting(conn, held, now)
    woken = sum(_wake(engine, row, now) for row in rows if _awaits(runtime.playbook(row.playbook_id), row))
    if woken:
        log.info("waits ended by closed tasks", extra={"woken": woken})
    return woken
