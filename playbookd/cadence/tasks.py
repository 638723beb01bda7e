"""CSM tasks as work items: created (or refreshed) by task steps, then done, dismissed, snoozed,
reassigned or reopened by a person, through the CLI or any other front end calling `change`.

States: `open -> done | dismissed`, `open -> snoozed` (until a time, after which it counts as open
again), and `reopen` takes a snoozed, done or dismissed task back to open. There is one open (or
snoozed) task per (playbook, account, step): `open_key` is unique while it is, so a task step of a
later enrollment refreshes that task instead of adding one, whichever replica gets there first.
Every change is one transaction with its audit entry and its webhook: all of it, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Row, and_, case, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from playbookd.cadence.task_events import CLOSED, DISMISSED, DONE, OPEN, SNOOZED, announce
from playbookd.config.tasks import Tasks
from playbookd.errors import ConflictError, UserError
from playbookd.model.addresses import canonical_or_none
from playbookd.store import audit
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.schema import tasks

Action = Literal["done", "dismiss", "snooze", "reassign", "reopen"]
ACTIONS: tuple[Action, ...] = ("done", "dismiss", "snooze", "reassign", "reopen")
_FROM: dict[Action, tuple[str, ...]] = {  # the (effective) states each action applies to
    "done": (OPEN, SNOOZED), "dismiss": (OPEN, SNOOZED), "snooze": (OPEN, SNOOZED),
    "reassign": (OPEN, SNOOZED), "reopen": (SNOOZED, DONE, DISMISSED)}
_EVENT: dict[Action, str] = {"done": "done", "dismiss": "dismissed", "snooze": "snoozed",
                             "reassign": "reassigned", "reopen": "reopened"}


@dataclass(frozen=True)
class NewTask:
    """What a task step asks for."""

    playbook_id: str
    account_id: str
    enrollment_id: int
    step: int
    step_key: str
    title: str
    assignee: str | None
    due_at: datetime | None


@dataclass(frozen=True)
class Task:
    id: int
    key: str
    playbook_id: str
    account_id: str
    step_key: str | None
    enrollment_id: int | None
    title: str
    assignee: str | None
    due_at: datetime | None
    state: str  # as it counts now: a snooze that has ended reads `open`
    snoozed_until: datetime | None
    note: str | None
    created_at: datetime | None
    refreshed_at: datetime | None
    refresh_count: int
    closed_at: datetime | None
    revision: int

    def as_json(self) -> dict[str, Any]:
        iso = {name: value.isoformat() if isinstance(value, datetime) else value for name, value in (
            ("due_at", self.due_at), ("snoozed_until", self.snoozed_until), ("created_at", self.created_at),
            ("refreshed_at", self.refreshed_at), ("closed_at", self.closed_at))}
        return {"id": self.id, "key": self.key, "playbook": self.playbook_id, "account": self.account_id,
                "step": self.step_key, "enrollment": self.enrollment_id, "title": self.title,
                "assignee": self.assignee, "state": self.state, "note": self.note,
                "refresh_count": self.refresh_count, "revision": self.revision, **iso}


@dataclass(frozen=True)
class Change:
    """One task changed by `change`: from which state to which, and its assignee after it."""

    id: int
    action: Action
    old_state: str
    new_state: str
    assignee: str | None
    snoozed_until: datetime | None

    def line(self) -> str:
        until = self.snoozed_until if self.new_state == SNOOZED else None
        extra = f" until {until.isoformat(timespec='minutes')}" if until else ""
        who = f" (assignee {self.assignee})" if self.action == "reassign" else ""
        return f"task {self.id}: {self.old_state} -> {self.new_state}{extra}{who}"


def identity(playbook_id: str, account_id: str, step_key: str) -> str:
    return f"{playbook_id}\x1f{account_id}\x1f{step_key}"


def in_state(state: str, now: datetime) -> ColumnElement[bool]:
    """The tasks whose state counts as `state` at `now`: a snooze that has run out counts as open."""
    woken = and_(tasks.c.state == SNOOZED, tasks.c.snoozed_until <= now)
    if state == OPEN:
        return or_(tasks.c.state == OPEN, woken)
    if state == SNOOZED:
        return and_(tasks.c.state == SNOOZED, tasks.c.snoozed_until > now)
    return tasks.c.state == state


def effective_state(state: str, snoozed_until: datetime | None, now: datetime) -> str:
    """A snooze that has run out counts as open: listed again, overdue by its due date."""
    until = aware(snoozed_until)
    return OPEN if state == SNOOZED and (until is None or until <= now) else state


def _task(row: Row[Any], now: datetime) -> Task:
    return Task(row.id, row.key, row.playbook_id, row.account_id, row.step_key, row.enrollment_id, row.title,
                row.assignee, aware(row.due_at), effective_state(row.state, row.snoozed_until, now),
                aware(row.snoozed_until), row.note, aware(row.created_at), aware(row.refreshed_at),
                int(row.refresh_count or 0), aware(row.closed_at), int(row.revision or 1))


# -- created by a task step ---------------------------------------------------------------------------

def _refresh(conn: Connection, new: NewTask, key: str, now: datetime) -> int | None:
    """Bring the open task of this (playbook, account, step) up to date; its id, or None if there is none.
    An assignee a person chose stays."""
    found = conn.execute(update(tasks).where(tasks.c.open_key == key).values(
        title=new.title, due_at=new.due_at, enrollment_id=new.enrollment_id, refreshed_at=now, updated_at=now,
        refresh_count=tasks.c.refresh_count + 1, revision=tasks.c.revision + 1,
        assignee=case((tasks.c.assigned_by.is_(None), new.assignee), else_=tasks.c.assignee),
    ).returning(tasks.c.id)).first()
    return None if found is None else int(found.id)


def open_task(conn: Connection, new: NewTask, now: datetime, settings: Tasks) -> tuple[int, str]:
    """Create the task a step asks for, or refresh the open one of the same (playbook, account, step);
    returns its id and `created`, `refreshed` or `unchanged` (this very step ran before)."""
    key, row_key = identity(new.playbook_id, new.account_id, new.step_key), f"{new.enrollment_id}:{new.step}"
    for _ in range(3):  # the open task may be closed between our insert and our refresh: then insert again
        mine = conn.execute(select(tasks.c.id).where(tasks.c.key == row_key)).first()
        if mine is not None:
            return int(mine.id), "unchanged"
        # ON CONFLICT DO NOTHING on open_key: on PostgreSQL a racing replica's insert waits for ours to
        # commit, then finds it, and refreshes it below
        if insert_ignore(conn, tasks, [{
                "key": row_key, "account_id": new.account_id, "playbook_id": new.playbook_id,
                "enrollment_id": new.enrollment_id, "title": new.title, "assignee": new.assignee,
                "due_at": new.due_at, "state": OPEN, "created_at": now, "step_key": new.step_key, "open_key": key,
                "refresh_count": 0, "revision": 1, "updated_at": now}]):
            created = int(conn.execute(select(tasks.c.id).where(tasks.c.key == row_key)).scalar_one())
            announce(conn, created, "created", now, settings)
            return created, "created"
        if (refreshed := _refresh(conn, new, key, now)) is not None:
            announce(conn, refreshed, "refreshed", now, settings)
            return refreshed, "refreshed"
    raise ConflictError(f"task {row_key}: the open task of {new.playbook_id}, {new.account_id}, step "
                        f"{new.step_key} keeps changing; try again")


# -- listed ---------------------------------------------------------------------------------------------

def list_tasks(engine: Engine, *, now: datetime, assignee: str | None = None, overdue: bool = False,
               include_closed: bool = False, limit: int = 1000) -> list[Task]:
    """Tasks, soonest due first. By default the open ones and those whose snooze has ended; `overdue`:
    those of them due before `now`; `include_closed`: every task, snoozed, done and dismissed too."""
    query = select(tasks).order_by(tasks.c.due_at.is_(None), tasks.c.due_at, tasks.c.id).limit(limit)
    if assignee:
        query = query.where(tasks.c.assignee.in_({assignee, canonical_or_none(assignee) or assignee}))
    if not include_closed or overdue:
        query = query.where(in_state(OPEN, now))
    if overdue:
        query = query.where(tasks.c.due_at < now)
    with engine.connect() as conn:
        return [_task(row, now) for row in conn.execute(query)]


# -- changed by a person --------------------------------------------------------------------------------

def _arguments(action: Action, now: datetime, until: datetime | None, assignee: str | None) -> str | None:
    """Check the arguments against the action; returns the assignee in canonical form."""
    if action not in ACTIONS:
        raise UserError(f"unknown task action {action!r}; one of: {', '.join(ACTIONS)}")
    if (until is not None) != (action == "snooze"):
        raise UserError("snooze needs an until time" if action == "snooze" else f"{action} takes no until time")
    if until is not None and until <= now:
        raise UserError(f"snooze until {until.isoformat()}: that is not in the future")
    if (assignee is not None) != (action == "reassign"):
        raise UserError("reassign needs an assignee" if action == "reassign" else f"{action} takes no assignee")
    if assignee is None:
        return None
    address = canonical_or_none(assignee)
    if address is None:
        raise UserError(f"reassign to {assignee!r}: not an email address")
    return address


def _problem(row: Row[Any] | None, task_id: int, action: Action, now: datetime) -> str | None:
    if row is None:
        return f"task {task_id}: no such task"
    state = effective_state(row.state, row.snoozed_until, now)
    if state in _FROM[action]:
        return None
    if {"reopen": OPEN, "done": DONE, "dismiss": DISMISSED}.get(action) == state:
        return f"task {task_id}: is {state} already"
    article = "an" if state == OPEN else "a"
    return f"task {task_id}: is {state}; cannot {action} {article} {state} task" + (
        " (reopen it first)" if state in CLOSED else "")


def _reopen_conflict(conn: Connection, row: Row[Any]) -> str | None:
    """Reopening must not make a second open task of the same (playbook, account, step)."""
    if row.step_key is None or row.state not in CLOSED:
        return None
    key = identity(row.playbook_id, row.account_id, row.step_key)
    other = conn.execute(select(tasks.c.id).where(tasks.c.open_key == key, tasks.c.id != row.id)).first()
    return None if other is None else (f"task {row.id}: cannot reopen: task {other.id} is open for the same "
                                       "playbook, account and step (close that one first)")


def _new_values(row: Row[Any], action: Action, now: datetime, until: datetime | None, assignee: str | None,
                note: str | None, user: str) -> dict[str, Any]:
    values: dict[str, Any] = {"note": note, "updated_at": now, "revision": tasks.c.revision + 1}
    if action in ("done", "dismiss"):
        values.update(state=DONE if action == "done" else DISMISSED, open_key=None, closed_at=now,
                      snoozed_until=None)
    elif action == "snooze":
        values.update(state=SNOOZED, snoozed_until=until)
    elif action == "reassign":
        values.update(assignee=assignee, assigned_by=user)
        if effective_state(row.state, row.snoozed_until, now) == OPEN:
            values.update(state=OPEN, snoozed_until=None)  # an ended snooze is tidied away
    else:
        key = identity(row.playbook_id, row.account_id, row.step_key) if row.step_key else None
        values.update(state=OPEN, open_key=key, closed_at=None, snoozed_until=None)
    return values


def _apply(conn: Connection, row: Row[Any], action: Action, values: dict[str, Any], now: datetime, note: str | None,
           user: str, settings: Tasks) -> Change:
    old = effective_state(row.state, row.snoozed_until, now)
    conn.execute(update(tasks).where(tasks.c.id == row.id).values(**values))
    after = conn.execute(select(tasks).where(tasks.c.id == row.id)).one()
    new, until = effective_state(after.state, after.snoozed_until, now), aware(after.snoozed_until)
    detail = {"task": row.id, "action": action, "user": user, "note": note, "from": old, "to": new,
              **({"assignee_from": row.assignee, "assignee_to": after.assignee} if action == "reassign" else {}),
              **({"until": until.isoformat()} if until else {})}
    audit.record(conn, f"task_{_EVENT[action]}", account_id=row.account_id, playbook_id=row.playbook_id,
                 enrollment_id=row.enrollment_id, reason=note, detail=detail, at=now)
    announce(conn, row.id, _EVENT[action], now, settings, note=note, user=user)
    return Change(row.id, action, old, new, after.assignee, until)


def change(engine: Engine, ids: Sequence[int], action: Action, *, note: str | None, user: str, now: datetime,
           settings: Tasks, until: datetime | None = None, assignee: str | None = None) -> list[Change]:
    """Apply `action` to every task in `ids`, in one transaction: every id unknown or in a state the action
    does not apply to is named in one UserError and nothing changes. Each change is audited with `user`,
    `note` and the states before and after, and queued for `settings.webhook`."""
    address = _arguments(action, now, until, assignee)
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise UserError("no task ids given")
    try:
        with transaction(engine) as conn:
            query = select(tasks).where(tasks.c.id.in_(wanted))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # two people closing one task: the second sees it closed
            rows = {row.id: row for row in conn.execute(query)}
            problems = [p for i in wanted if (p := _problem(rows.get(i), i, action, now))]
            if action == "reopen":
                problems += [p for i in wanted if i in rows and (p := _reopen_conflict(conn, rows[i]))]
            if problems:
                raise UserError("; ".join(problems) + "; nothing was changed")
            return [_apply(conn, rows[i], action, _new_values(rows[i], action, now, until, address, note, user),
                           now, note, user, settings) for i in wanted]
    except IntegrityError:  # a task of the same step was opened meanwhile, on another replica
        raise ConflictError(f"cannot {action} task(s) {', '.join(map(str, wanted))}: another open task of the "
                            "same playbook, account and step appeared meanwhile; nothing was changed") from None
