"""Continuous exits: at every evaluation, an active enrollment whose account now matches its
playbook's `exit_when` or config.yaml's project-wide `exit_when`, or has left the playbook's
audience, exits at once, before any further step comes due.

The reasons, as `history`, `explain` and `status` show them, are the constants below (the README
lists them).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from playbookd.engine.scope import FULL, Scope
from playbookd.model import evaluation
from playbookd.model.account import AccountRecord
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.accounts import load_account_types, records_by_id
from playbookd.store.chunks import CHUNK, chunked
from playbookd.store.database import transaction
from playbookd.store.marks import in_range, touch
from playbookd.store.people import attach_contacts
from playbookd.store.schema import enrollments

PROJECT_EXIT = "account matches config exit_when"
PLAYBOOK_EXIT = "exit_when matched"
LEFT_AUDIENCE = "left the audience"
PLAYBOOK_GONE = "playbook removed or retired"
ACCOUNT_GONE = "account no longer in the store"


def exit_reason(runtime: Runtime, playbook: Playbook, record: AccountRecord, now: datetime) -> str | None:
    """Why an enrollment of `playbook` for this account must end now, else None."""
    tz = runtime.config.tz
    if runtime.leaves_everything(record, now):
        return PROJECT_EXIT
    if playbook.segments is not None and record.get("segment") not in playbook.segments:
        return f"{LEFT_AUDIENCE} (segment {record.get('segment')})"
    if playbook.exit_when is not None and evaluation.evaluate(playbook.exit_when, record, now, tz):
        return PLAYBOOK_EXIT
    return None


def _active(engine: Engine, after: int, id_range: tuple[str | None, str | None] | None,
            *where: Any) -> list[Any]:
    query = (select(enrollments.c.id, enrollments.c.playbook_id, enrollments.c.account_id)
             .where(enrollments.c.state == "active", enrollments.c.id > after, *where)
             .order_by(enrollments.c.id).limit(CHUNK))
    query = in_range(query, enrollments.c.account_id, id_range)
    with engine.connect() as conn:
        return list(conn.execute(query))


def _exits(runtime: Runtime, engine: Engine, rows: list[Any], types: dict[str, str],
           now: datetime) -> list[tuple[Any, str]]:
    ids = {row.account_id for row in rows}
    loaded = list(records_by_id(engine, ids, types, runtime.history_from(now)))
    if runtime.needs_contacts:
        with engine.connect() as conn:
            attach_contacts(conn, loaded)
    records = {r["id"]: r for r in loaded}
    found = []
    for row in rows:
        playbook, record = runtime.playbook(row.playbook_id), records.get(row.account_id)
        if playbook is not None and playbook.status != "retired" and record is not None:
            reason = exit_reason(runtime, playbook, record, now)
            if reason is not None:
                found.append((row, reason))
    return found


def _end(engine: Engine, found: list[tuple[Any, str]], now: datetime) -> int:
    ended = 0
    with transaction(engine) as conn:
        for row, reason in found:
            done = conn.execute(update(enrollments).where(enrollments.c.id == row.id, enrollments.c.state == "active")
                                .values(state="exited", next_due_at=None, finished_at=now, reason=reason,
                                        active_key=None))
            if done.rowcount:
                touch(conn, [row.account_id])
                audit.record(conn, audit.EXITED, account_id=row.account_id, playbook_id=row.playbook_id,
                             enrollment_id=row.id, reason=reason, at=now)
                ended += 1
    return ended


def _pages(engine: Engine, id_range: tuple[str | None, str | None] | None, scope: Scope) -> Iterator[list[Any]]:
    """The active enrollments to check, a page at a time: all of them, or those of the accounts looked
    at plus those of the playbooks evaluated over every account."""
    wheres: list[tuple[Any, ...]] = [()]
    if scope.accounts is not None:
        wheres = [(enrollments.c.account_id.in_(batch),) for batch in chunked(sorted(scope.accounts))]
        if scope.everyone:
            wheres.append((enrollments.c.playbook_id.in_(sorted(scope.everyone)),))
    for where in wheres:
        last = 0
        while rows := _active(engine, last, id_range, *where):
            yield rows
            last = rows[-1].id


def exit_matching(runtime: Runtime, engine: Engine, now: datetime,
                  id_range: tuple[str | None, str | None] | None = None, scope: Scope = FULL) -> int:
    """End every active enrollment (of accounts in `id_range`, of those `scope` looks at) that must exit
    now; returns how many."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    ended = 0
    for rows in _pages(engine, id_range, scope):
        ended += _end(engine, _exits(runtime, engine, rows, types, now), now)
    return ended
