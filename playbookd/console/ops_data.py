"""What the Tasks and Outbox pages show: the task queue by assignee, outbox counts by state and the
messages waiting for an operator's call."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from playbookd.cadence.tasks import in_state
from playbookd.console.tables import Link, Table, href, offset, paged
from playbookd.store.database import aware, utcnow
from playbookd.store.schema import outbox, tasks

TASK_STATES = ("open", "done", "dismissed", "snoozed")
DECIDE = ("unknown", "failed")  # the states only an operator resolves (resend or drop)
UNASSIGNED = "(unassigned)"


def assignees(engine: Engine, state: str) -> Table:
    """Open work per assignee, the queue's overview."""
    table = Table("assignees", ("assignee", "tasks", "next due"), empty="No task in this state.")
    query = (select(tasks.c.assignee, func.count(), func.min(tasks.c.due_at)).where(in_state(state, utcnow()))
             .group_by(tasks.c.assignee).order_by(tasks.c.assignee))
    with engine.connect() as conn:
        for who, count, due in conn.execute(query):
            name = who or UNASSIGNED
            table.rows.append((Link(name, href("tasks", state=state, assignee=name)), count, aware(due)))
    return table


def queue(engine: Engine, state: str, assignee: str | None, page: int, size: int) -> Table:
    """Tasks in `state`, soonest due first, for one assignee or all (index on state, assignee, due)."""
    table = Table("tasks", ("id", "due", "assignee", "account", "playbook", "state", "title"), page=page,
                  empty="No task here.")
    query = select(tasks).where(in_state(state, utcnow()))
    if assignee == UNASSIGNED:
        query = query.where(tasks.c.assignee.is_(None))
    elif assignee:
        query = query.where(tasks.c.assignee == assignee)
    query = query.order_by(tasks.c.due_at, tasks.c.id).offset(offset(page, size)).limit(size + 1)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    shown, table.has_next = paged(rows, page, size)
    table.rows = [(r.id, aware(r.due_at), r.assignee or UNASSIGNED, Link(r.account_id, href("accounts", r.account_id)),
                   Link(r.playbook_id, href("playbooks", r.playbook_id)), state, r.title) for r in shown]
    return table


def outbox_counts(engine: Engine) -> Table:
    table = Table("outbox-states", ("state", "messages"))
    query = select(outbox.c.state, func.count()).group_by(outbox.c.state).order_by(outbox.c.state)
    with engine.connect() as conn:
        table.rows = [(state, count) for state, count in conn.execute(query)]
    return table


def waiting(engine: Engine, state: str, page: int, size: int) -> Table:
    """Messages in `unknown` or `failed`, oldest first (index on state, not_before)."""
    table = Table("messages", ("id", "state", "account", "playbook", "to", "subject", "attempts", "queued",
                               "error"), page=page, empty="No message in this state.")
    query = (select(outbox.c.id, outbox.c.state, outbox.c.account_id, outbox.c.playbook_id, outbox.c.to_addr,
                    outbox.c.subject, outbox.c.attempts, outbox.c.created_at, outbox.c.last_error)
             .where(outbox.c.state == state).order_by(outbox.c.not_before, outbox.c.id)
             .offset(offset(page, size)).limit(size + 1))
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    shown, table.has_next = paged(rows, page, size)
    table.rows = [(r.id, r.state, Link(r.account_id, href("accounts", r.account_id)), r.playbook_id, r.to_addr,
                   r.subject, r.attempts, aware(r.created_at), r.last_error) for r in shown]
    return table
