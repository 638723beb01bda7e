"""Calendar playbooks: at each occurrence of its schedule, every matching account enters, once.

The evaluation that first sees an occurrence due opens it: a row in calendar_runs, unique per
(playbook, occurrence), whose run_at is that evaluation's moment; every range of that evaluation,
on whichever replica, then includes the playbook. Occurrences missed while the daemon was down
merge into the latest one, which runs if it is within `catch_up`; one found later is recorded as
missed (logged and audited) and nobody enters for it. Nothing runs twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from playbookd.model.cron import MAX_CATCH_UP, latest, occurrences
from playbookd.model.steps import Playbook
from playbookd.store import audit
from playbookd.store.database import aware, insert_ignore
from playbookd.store.schema import calendar_runs

log = logging.getLogger("playbookd.calendar")
MERGED_CAP = 1000  # merged occurrences counted at most (an every-minute schedule down for a week)


@dataclass(frozen=True)
class Due:
    playbook: Playbook
    occurrence: datetime
    merged: int  # earlier occurrences since the last one recorded, merged into this run
    missed: bool  # past its catch_up: recorded, nobody enters


def _last(conn: Connection, playbook_id: str) -> datetime | None:
    query = select(func.max(calendar_runs.c.occurrence)).where(calendar_runs.c.playbook_id == playbook_id)
    return aware(conn.execute(query).scalar())


def due(conn: Connection, playbooks: Sequence[Playbook], now: datetime, tz: ZoneInfo) -> list[Due]:
    """Occurrences of the playbooks' schedules that are due at `now` and not yet recorded (reads only)."""
    found = []
    for playbook in playbooks:
        if playbook.schedule is None:
            continue
        cron = playbook.schedule.cron
        occurrence = latest(cron, tz, now, MAX_CATCH_UP)
        last = _last(conn, playbook.id)
        if occurrence is None or (last is not None and occurrence <= last):
            continue
        missed = now - occurrence > playbook.schedule.catch_up
        if missed and last is None:
            continue  # a playbook that never ran has missed nothing: it starts with its next occurrence
        merged = 0 if last is None else len(occurrences(cron, tz, last, occurrence, MERGED_CAP + 1)) - 1
        found.append(Due(playbook, occurrence, min(merged, MERGED_CAP), missed))
    return found


def open_due(conn: Connection, playbooks: Sequence[Playbook], now: datetime, tz: ZoneInfo) -> list[str]:
    """Record the due occurrences; returns the playbooks whose accounts enter at the evaluation at `now`."""
    opened = []
    for item in due(conn, playbooks, now, tz):
        state = "missed" if item.missed else "run"
        row = {"playbook_id": item.playbook.id, "occurrence": item.occurrence, "state": state, "run_at": now,
               "merged": item.merged}
        if not insert_ignore(conn, calendar_runs, [row]):
            continue  # another replica or command got there first
        detail = {"occurrence": item.occurrence.isoformat(), "merged": item.merged}
        if item.missed:
            why = f"found {now - item.occurrence} after it, past catch_up {item.playbook.schedule.catch_up}" \
                if item.playbook.schedule else ""
            audit.record(conn, audit.CALENDAR_MISSED, playbook_id=item.playbook.id, reason="past_catch_up",
                         detail={**detail, "error": why}, at=now)
            log.warning("calendar playbook %s missed its occurrence %s: %s", item.playbook.id,
                        item.occurrence.isoformat(), why, extra={"playbook": item.playbook.id})
            continue
        audit.record(conn, audit.CALENDAR_RUN, playbook_id=item.playbook.id, detail=detail, at=now)
        log.info("calendar playbook %s: occurrence %s%s", item.playbook.id, item.occurrence.isoformat(),
                 f" (merging {item.merged} missed while down)" if item.merged else "",
                 extra={"playbook": item.playbook.id})
        opened.append(item.playbook.id)
    return opened


def opened_at(conn: Connection, now: datetime) -> set[str]:
    """Playbooks whose occurrence the evaluation at `now` opened: their accounts enter in it."""
    query = select(calendar_runs.c.playbook_id).where(calendar_runs.c.run_at == now, calendar_runs.c.state == "run")
    return set(conn.execute(query).scalars())
