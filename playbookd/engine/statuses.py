"""Pausing, resuming and retiring playbooks.

A paused playbook (or one set back to draft) holds: its enrollments are not advanced and its queued
mail and webhooks stay queued (cadence.advance and delivery leave them alone). `apply` records when the
hold began; once the playbook is live again it moves every wait, and the age of every held message, on
by the time the hold lasted, so each wait goes on with the time it had left and no message is failed
or skipped for having waited. A retired playbook ends every enrollment it has.

`playbookd playbooks pause|resume` sets the status in the database (the playbook's file may be
read-only to the service): see store.launch for how it and the file's `status:` combine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.engine import Engine

from playbookd.engine.exits import PLAYBOOK_GONE
from playbookd.errors import UserError, did_you_mean
from playbookd.model.launch import HOLDING, Declared
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.chunks import chunked
from playbookd.store.database import aware, insert_ignore, transaction, upsert
from playbookd.store.launch import SETTABLE, effective, rows
from playbookd.store.schema import enrollments, outbox, playbook_states, webhooks

HELD, RESUMED, STATUS_SET = "held", "resumed", "status_set"


def _hold(conn: Connection, playbook_id: str, status: str, at: datetime) -> None:
    insert_ignore(conn, playbook_states, [{"playbook_id": playbook_id}])
    began = conn.execute(update(playbook_states).where(playbook_states.c.playbook_id == playbook_id,
                                                       playbook_states.c.held_since.is_(None))
                         .values(held_since=at))
    if began.rowcount:
        audit.record(conn, HELD, playbook_id=playbook_id, reason=status, at=at)


def _shift(conn: Connection, table: Any, column: Any, where: Sequence[Any], by: timedelta) -> int:
    found = [(r[0], aware(r[1])) for r in conn.execute(select(table.c.id, column).where(*where, column.is_not(None)))]
    statement = update(table).where(table.c.id == bindparam("row_id")).values({column.name: bindparam("moved")})
    for batch in chunked(found, 500):
        conn.execute(statement, [{"row_id": i, "moved": when + by} for i, when in batch if when is not None])
    return len(found)


def _release(conn: Connection, playbook_id: str, status: str, at: datetime) -> None:
    since = conn.execute(select(playbook_states.c.held_since)
                         .where(playbook_states.c.playbook_id == playbook_id)).scalar()
    # the conditional update makes one replica the one that moves the waits, whoever else saw the hold end
    ended = conn.execute(update(playbook_states).where(playbook_states.c.playbook_id == playbook_id,
                                                       playbook_states.c.held_since.is_not(None))
                         .values(held_since=None))
    began = aware(since)
    if not ended.rowcount or began is None:
        return
    held = max(at - began, timedelta(0))
    moved = _shift(conn, enrollments, enrollments.c.next_due_at,
                   (enrollments.c.playbook_id == playbook_id, enrollments.c.state == "active",
                    enrollments.c.entered_at < began), held)
    messages = _shift(conn, outbox, outbox.c.created_at,
                      (outbox.c.playbook_id == playbook_id, outbox.c.state == "queued"), held)
    _shift(conn, webhooks, webhooks.c.created_at,
           (webhooks.c.playbook_id == playbook_id, webhooks.c.state == "queued"), held)
    held_for = str(timedelta(seconds=round(held.total_seconds())))
    audit.record(conn, RESUMED, playbook_id=playbook_id, reason=f"{status} after {held_for} held", at=at,
                 detail={"held_for": held_for, "waits_moved": moved, "messages_held": messages})


def _end_retired(engine: Engine, retired: list[str], at: datetime) -> int:
    ended = 0
    while retired and _any_left(engine, retired):
        with transaction(engine) as conn:
            found = conn.execute(select(enrollments.c.id, enrollments.c.account_id, enrollments.c.playbook_id)
                                 .where(enrollments.c.playbook_id.in_(retired),
                                        enrollments.c.state.in_(("active", "failed"))).limit(500)).all()
            if not found:
                return ended
            conn.execute(update(enrollments).where(enrollments.c.id.in_([r.id for r in found])).values(
                state="exited", next_due_at=None, finished_at=at, reason=PLAYBOOK_GONE, active_key=None))
            audit.record_many(conn, [{"event": audit.EXITED, "account_id": r.account_id, "playbook_id": r.playbook_id,
                                      "enrollment_id": r.id, "reason": PLAYBOOK_GONE, "at": at} for r in found])
        ended += len(found)
    return ended


def _any_left(engine: Engine, retired: list[str]) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(enrollments.c.id).where(enrollments.c.playbook_id.in_(retired),
                                                           enrollments.c.state.in_(("active", "failed")))
                            .limit(1)).first() is not None


def _changes(runtime: Runtime, engine: Engine) -> list[tuple[str, str, bool]]:
    """(playbook, status, whether it now holds) for each playbook whose hold must begin or end."""
    with engine.connect() as conn:
        found = rows(conn)
    changes = []
    for playbook in runtime.playbooks:
        row = found.get(playbook.id)
        status = effective(playbook.status, row)
        held = row is not None and row.held_since is not None
        if (status in HOLDING) != held:
            changes.append((playbook.id, status, status in HOLDING))
    return changes


def _outdated(runtime: Runtime, engine: Engine) -> list[str]:
    """Playbooks whose file's status changed since a command set theirs: the file, newer, wins for good."""
    with engine.connect() as conn:
        found = rows(conn)
    return [p.id for p in runtime.playbooks
            if (row := found.get(p.id)) is not None and row.status is not None and row.yaml_status != p.status]


def apply(runtime: Runtime, engine: Engine, now: datetime) -> None:
    """Bring holds in line with each playbook's status now, and end the enrollments of retired ones."""
    changes, outdated = _changes(runtime, engine), _outdated(runtime, engine)
    if changes or outdated:
        with transaction(engine) as conn:
            if outdated:
                conn.execute(update(playbook_states).where(playbook_states.c.playbook_id.in_(outdated))
                             .values(status=None, yaml_status=None))
            for playbook_id, status, hold in changes:
                (_hold if hold else _release)(conn, playbook_id, status, now)
    _end_retired(engine, [p.id for p in runtime.playbooks if p.status == "retired"], now)


def find(declared: Sequence[Declared], playbook_id: str) -> Declared:
    for item in declared:
        if item.id == playbook_id:
            return item
    known = [d.id for d in declared]
    raise UserError(f"no playbook {playbook_id!r}{did_you_mean(playbook_id, known, '')}; "
                    f"known: {', '.join(known) or 'none'}")


def set_status(engine: Engine, playbook: Declared, wanted: str, at: datetime, note: str | None) -> str:
    """`playbookd playbooks pause|resume`: the status in the database, which stands until the file's changes."""
    if playbook.status not in SETTABLE:
        raise UserError(f"{playbook.id} is {playbook.status} in its file: only a live or paused playbook is "
                        f"paused or resumed here (set 'status: live' in the file to launch a draft)")
    with transaction(engine) as conn:
        row = rows(conn).get(playbook.id)
        before = effective(playbook.status, row)
        if before == wanted:
            return f"{playbook.id} is {wanted} already"
        upsert(conn, playbook_states, ["playbook_id"], [{
            "playbook_id": playbook.id, "status": None if wanted == playbook.status else wanted,
            "yaml_status": playbook.status, "set_at": at, "note": note}],
            only=["status", "yaml_status", "set_at", "note"])
        audit.record(conn, STATUS_SET, playbook_id=playbook.id, reason=wanted, at=at,
                     detail={"was": before, "note": note})
        if wanted in HOLDING:
            _hold(conn, playbook.id, wanted, at)
        else:
            _release(conn, playbook.id, wanted, at)
    return f"{playbook.id} is {wanted} (was {before})"


@dataclass(frozen=True)
class Shown:
    """One playbook's line in `status` and `playbooks list`."""

    id: str
    status: str
    file_status: str
    set_at: datetime | None
    note: str | None
    held_since: datetime | None

    def origin(self) -> str:
        if self.status == self.file_status:
            return "file"
        verb = "pause" if self.status == "paused" else "resume"
        return f"playbooks {verb}, {self.set_at:%Y-%m-%d %H:%M}" + (f" ({self.note})" if self.note else "")


def shown(engine: Engine, declared: Sequence[Declared]) -> list[Shown]:
    with engine.connect() as conn:
        found = rows(conn)
    out = []
    for item in declared:
        row = found.get(item.id)
        out.append(Shown(item.id, effective(item.status, row), item.status, aware(row.set_at) if row else None,
                         row.note if row else None, aware(row.held_since) if row else None))
    return out
