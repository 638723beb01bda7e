"""Goals measured as they happen: at every evaluation, every enrollment whose goal is still watched
(until `goal.within` after entry, finished or not; without `within`, while it is active or failed)
is checked, and the first evaluation at which the goal holds is recorded as its conversion.

A goal that already held at entry is `met_at_entry`: recorded at entry, never a conversion, never an
exit. A met goal ends an active enrollment unless the playbook says `goal: {exit: false}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, false, or_, select, true, update
from sqlalchemy.engine import Engine

from playbookd.config.durations import Months, Span, shift
from playbookd.engine.scope import FULL, Scope
from playbookd.model import evaluation
from playbookd.model.account import AccountRecord, decode_account
from playbookd.model.conditions import Condition, uses_contacts
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.accounts import RECORD, load_account_types, records_by_id
from playbookd.store.chunks import CHUNK, chunked
from playbookd.store.database import aware, transaction
from playbookd.store.marks import in_range, touch
from playbookd.store.people import attach_contacts
from playbookd.store.schema import accounts, enrollments

GOAL_EXIT = "goal met"  # the exit reason when a met goal ends an enrollment
_COLUMNS = (enrollments.c.id, enrollments.c.account_id, enrollments.c.playbook_id, enrollments.c.state,
            enrollments.c.entered_at, enrollments.c.goal_met_at, enrollments.c.goal_at_entry)


def watched(playbook: Playbook, row: Any, now: datetime, tz: ZoneInfo) -> bool:
    """Whether the enrollment's goal is still to be checked at `now`."""
    goal = playbook.goal
    if goal is None or row.goal_met_at is not None or row.goal_at_entry:
        return False
    if goal.within is None:
        return bool(row.state in ("active", "failed"))
    entered = aware(row.entered_at)
    assert entered is not None
    return now <= shift(entered, goal.within, tz)


def _earliest_entry(now: datetime, within: Span, tz: ZoneInfo) -> datetime:
    """A lower bound of entry times still watched; `watched` decides exactly (months vary in length)."""
    if isinstance(within, Months):
        return within.before(now, tz) - timedelta(days=4)
    return now - timedelta(seconds=within)


def _records(conn: Connection, ids: Iterable[str]) -> dict[str, AccountRecord]:
    types = load_account_types(conn)
    found: dict[str, AccountRecord] = {}
    for batch in chunked(sorted(set(ids))):
        for row in conn.execute(select(*RECORD).where(accounts.c.id.in_(batch))):
            found[row.id] = decode_account(row.id, row.segment, row.data, row.changes, types)
    return found


def held_at_entry(conn: Connection, entrants: Sequence[tuple[Playbook, str]], now: datetime,
                  tz: ZoneInfo) -> set[tuple[str, str]]:
    """The (playbook, account) pairs among new entrants whose goal already holds."""
    with_goal = [(p, a) for p, a in entrants if p.goal is not None]
    records = _records(conn, (a for _, a in with_goal)) if with_goal else {}
    if any(uses_contacts(p.goal.when if p.goal else None) for p, _ in with_goal):
        attach_contacts(conn, list(records.values()))
    return {(p.id, a) for p, a in with_goal
            if a in records and _holds(p.goal.when if p.goal else None, records[a], now, tz)}


def _holds(cond: Condition | None, record: AccountRecord, now: datetime, tz: ZoneInfo) -> bool:
    return cond is not None and evaluation.evaluate(cond, record, now, tz)


def mark_met(conn: Connection, row: Any, playbook: Playbook, now: datetime) -> bool:
    """Record the conversion (once, whoever races); end the enrollment if the goal says so.
    Returns True when the enrollment was ended."""
    done = conn.execute(update(enrollments).where(enrollments.c.id == row.id, enrollments.c.goal_met_at.is_(None))
                        .values(goal_met_at=now))
    if not done.rowcount:
        return False
    audit.record(conn, audit.GOAL_MET, account_id=row.account_id, playbook_id=playbook.id, enrollment_id=row.id,
                 at=now)
    if playbook.goal is None or not playbook.goal.exit or row.state != "active":
        return False
    ended = conn.execute(update(enrollments).where(enrollments.c.id == row.id, enrollments.c.state == "active")
                         .values(state="exited", next_due_at=None, finished_at=now, reason=GOAL_EXIT,
                                 active_key=None))
    if ended.rowcount:
        touch(conn, [row.account_id])
        audit.record(conn, audit.EXITED, account_id=row.account_id, playbook_id=playbook.id,
                     enrollment_id=row.id, reason=GOAL_EXIT, at=now)
    return bool(ended.rowcount)


def _watch_query(playbook: Playbook, now: datetime, tz: ZoneInfo, after: int,
                 id_range: tuple[str | None, str | None] | None, accounts: list[str] | None) -> Any:
    assert playbook.goal is not None
    query = (select(*_COLUMNS).where(
        enrollments.c.playbook_id == playbook.id, enrollments.c.goal_met_at.is_(None),
        true() if accounts is None else enrollments.c.account_id.in_(accounts),
        or_(enrollments.c.goal_at_entry.is_(None), enrollments.c.goal_at_entry == false()),
        enrollments.c.id > after).order_by(enrollments.c.id).limit(CHUNK))
    if playbook.goal.within is None:
        query = query.where(enrollments.c.state.in_(("active", "failed")))
    else:
        query = query.where(enrollments.c.entered_at >= _earliest_entry(now, playbook.goal.within, tz))
    query = in_range(query, enrollments.c.account_id, id_range)
    return query


def _measure_playbook(runtime: Runtime, engine: Engine, playbook: Playbook, now: datetime,
                      id_range: tuple[str | None, str | None] | None, types: dict[str, str],
                      scope: Scope) -> int:
    if scope.accounts is None or playbook.id in scope.everyone:
        return _measure_some(runtime, engine, playbook, now, id_range, types, None)
    return sum(_measure_some(runtime, engine, playbook, now, id_range, types, batch)
               for batch in chunked(sorted(scope.accounts)))


def _measure_some(runtime: Runtime, engine: Engine, playbook: Playbook, now: datetime,
                  id_range: tuple[str | None, str | None] | None, types: dict[str, str],
                  accounts: list[str] | None) -> int:
    tz, met, last = runtime.config.tz, 0, 0
    assert playbook.goal is not None
    while True:
        with engine.connect() as conn:
            rows = list(conn.execute(_watch_query(playbook, now, tz, last, id_range, accounts)))
        if not rows:
            return met
        last = rows[-1].id
        rows = [r for r in rows if watched(playbook, r, now, tz)]
        loaded = list(records_by_id(engine, {r.account_id for r in rows}, types))
        if uses_contacts(playbook.goal.when):
            with engine.connect() as conn:
                attach_contacts(conn, loaded)
        records = {r["id"]: r for r in loaded}
        reached = [r for r in rows if r.account_id in records
                   and _holds(playbook.goal.when, records[r.account_id], now, tz)]
        if reached:
            with transaction(engine) as conn:
                for row in reached:
                    mark_met(conn, row, playbook, now)
            met += len(reached)


def measure(runtime: Runtime, engine: Engine, now: datetime,
            id_range: tuple[str | None, str | None] | None = None, scope: Scope = FULL) -> int:
    """Check every watched goal (of accounts in `id_range`, of those `scope` looks at) at `now`; returns
    how many were met."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    return sum(_measure_playbook(runtime, engine, p, now, id_range, types, scope)
               for p in runtime.playbooks if p.goal is not None)
