"""Ramping a playbook in: `launch: {max_new_per_day: N}`.

Evaluation puts the accounts that qualify for a ramped playbook on its waiting list (and those of a
paused event playbook, so no event is lost to a pause). Once every range of an evaluation is done,
`admit` lets in at most N a calendar day (config.yaml's `timezone`), first qualified first. The
day's count is a `launch_days` row that whoever admits locks first, so the number holds with several
replicas sharing the ranges. An account that no longer qualifies leaves the list and, should it
qualify again, joins at the back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.engine import Engine

from playbookd.engine.enroll import Candidate, _eligible, enroll, statuses
from playbookd.engine.statuses import apply
from playbookd.model.launch import Launch
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.schema import enrollments, launch_days, launch_queue

log = logging.getLogger("playbookd.launch")
BATCH = 500


def day_of(at: datetime, tz: ZoneInfo) -> tuple[str, datetime, datetime]:
    """The calendar day of `at` in `tz`: its name and its bounds in UTC."""
    local = at.astimezone(tz).date()
    start = datetime.combine(local, time(0), tz)
    end = datetime.combine(local + timedelta(days=1), time(0), tz)
    return local.isoformat(), start.astimezone(UTC), end.astimezone(UTC)


def entered_on(conn: Connection, playbook_id: str, at: datetime, tz: ZoneInfo) -> int:
    """New enrollments of the playbook on the day of `at`: the day's count if kept, else counted."""
    day, start, end = day_of(at, tz)
    kept = conn.execute(select(launch_days.c.entered).where(launch_days.c.playbook_id == playbook_id,
                                                            launch_days.c.day == day)).scalar()
    if kept is not None:
        return int(kept)
    return int(conn.execute(select(func.count()).select_from(enrollments).where(
        enrollments.c.playbook_id == playbook_id, enrollments.c.entered_at >= start,
        enrollments.c.entered_at < end)).scalar_one())


def _room(conn: Connection, playbook: Playbook, at: datetime, tz: ZoneInfo) -> int:
    """How many more may enter today. Locks the day's count until the transaction ends (SQLite's
    write transactions are serial already), starting it from the enrollments the day already has."""
    assert playbook.launch.max_new_per_day is not None
    day, _, _ = day_of(at, tz)
    where = (launch_days.c.playbook_id == playbook.id, launch_days.c.day == day)
    insert_ignore(conn, launch_days, [{"playbook_id": playbook.id, "day": day,
                                       "entered": entered_on(conn, playbook.id, at, tz)}])
    query = select(launch_days.c.entered).where(*where)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return max(0, playbook.launch.max_new_per_day - int(conn.execute(query).scalar_one()))


def _sweep(conn: Connection, playbook: Playbook, at: datetime) -> None:
    """Accounts the evaluation at `at` no longer found qualifying leave the list (event entries stay:
    an event happened once and does not qualify again)."""
    conn.execute(delete(launch_queue).where(launch_queue.c.playbook_id == playbook.id,
                                            launch_queue.c.event_id.is_(None), launch_queue.c.seen_at < at))


def _next(conn: Connection, playbook: Playbook, at: datetime, limit: int) -> list[Candidate]:
    rows = conn.execute(select(launch_queue).where(
        launch_queue.c.playbook_id == playbook.id,
        or_(launch_queue.c.event_id.is_not(None), launch_queue.c.seen_at >= at))
        .order_by(launch_queue.c.qualified_at, launch_queue.c.account_id).limit(limit))
    return [Candidate(playbook, r.account_id, r.segment, r.event_id) for r in rows]


def _admit_some(runtime: Runtime, engine: Engine, playbook: Playbook, at: datetime, sweep: bool) -> tuple[int, bool]:
    """One transaction's worth: (enrollments made, whether more may follow)."""
    tz = runtime.config.tz
    with transaction(engine) as conn:
        if sweep:
            _sweep(conn, playbook, at)
        room = _room(conn, playbook, at, tz) if playbook.launch.ramped else BATCH
        taken = _next(conn, playbook, at, min(room, BATCH)) if room else []
        if not taken:
            return 0, False
        made = enroll(conn, _eligible(conn, taken, at, tz), at, tz)
        conn.execute(delete(launch_queue).where(launch_queue.c.playbook_id == playbook.id,
                                                launch_queue.c.account_id.in_([c.account_id for c in taken])))
        if playbook.launch.ramped and made:
            day, _, _ = day_of(at, tz)
            conn.execute(update(launch_days).where(launch_days.c.playbook_id == playbook.id, launch_days.c.day == day)
                         .values(entered=launch_days.c.entered + made))
    return made, len(taken) == min(room, BATCH)


def admit(runtime: Runtime, engine: Engine, at: datetime, sweep: bool = False) -> int:
    """Let waiting accounts into live playbooks, as many as each one's day allows; returns how many.
    `sweep` (once an evaluation at `at` is complete) first drops those it no longer found qualifying."""
    apply(runtime, engine, at)  # a hold that ended moves its waits on before anyone new enters
    status = statuses(runtime, engine)
    with engine.connect() as conn:
        waiting = set(conn.execute(select(launch_queue.c.playbook_id).distinct()).scalars())
    total = 0
    for playbook in runtime.playbooks:
        if playbook.id not in waiting or status[playbook.id] != "live":
            continue
        more, first = True, True
        while more:
            made, more = _admit_some(runtime, engine, playbook, at, sweep and first)
            total, first = total + made, False
    gone = waiting - {p.id for p in runtime.playbooks if status[p.id] != "retired"}
    if sweep and gone:  # retired or removed: nobody waits for it any more
        with transaction(engine) as conn:
            conn.execute(delete(launch_queue).where(launch_queue.c.playbook_id.in_(sorted(gone))))
    if total:
        log.info("admitted from waiting lists", extra={"enrolled": total})
    return total


@dataclass(frozen=True)
class Ramp:
    """A ramped playbook's day, for simulate, explain and status."""

    per_day: int
    entered_today: int
    waiting: int

    @property
    def room(self) -> int:
        return max(0, self.per_day - self.entered_today)


def ramp(conn: Connection, playbook_id: str, settings: Launch, at: datetime, tz: ZoneInfo) -> Ramp | None:
    if settings.max_new_per_day is None:
        return None
    waiting = conn.execute(select(func.count()).select_from(launch_queue)
                           .where(launch_queue.c.playbook_id == playbook_id)).scalar_one()
    return Ramp(settings.max_new_per_day, entered_on(conn, playbook_id, at, tz), int(waiting))


def waiting_since(conn: Connection, playbook_id: str, account_ids: list[str]) -> dict[str, datetime]:
    """When each account first qualified, for those on the playbook's waiting list."""
    found: dict[str, datetime] = {}
    for row in conn.execute(select(launch_queue.c.account_id, launch_queue.c.qualified_at).where(
            launch_queue.c.playbook_id == playbook_id, launch_queue.c.account_id.in_(account_ids))):
        when = aware(row.qualified_at)
        assert when is not None
        found[row.account_id] = when
    return found
