"""Event-triggered entry: pending events matched against the playbooks of their name, a batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Engine

from playbookd.engine.enroll import Candidate, _eligible, _enter, record_failures, rule_engine, statuses
from playbookd.model.account import AccountRecord
from playbookd.runtime import Runtime
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import transaction
from playbookd.store.people import attach_contacts
from playbookd.store.schema import events


def _event_records(conn: Connection, types: dict[str, str], limit: int, history_since: date | None,
                   contacts: bool) -> list[tuple[int, AccountRecord]]:
    rows = conn.execute(select(events).where(events.c.processed_at.is_(None))
                        .order_by(events.c.id).limit(limit)).all()
    out: list[tuple[int, AccountRecord]] = []
    for row in rows:
        record = get_account(conn, row.account_id, types, history_since) or {"id": row.account_id, "segment": "",
                                                                              "_changes": {}}
        record = {**record, "event": {**(row.data or {}), "name": row.name}}
        out.append((row.id, record))
    if contacts:
        attach_contacts(conn, [record for _, record in out])
    return out


def event_candidates(runtime: Runtime, engine: Engine, now: datetime,
                     batch: int = 500) -> Iterator[tuple[list[int], list[Candidate]]]:
    """Pending events, a batch at a time: (event ids, eligible candidates). A paused playbook's events
    are matched too: their accounts wait for it to be live again, so no event is lost to a pause."""
    status = statuses(runtime, engine)
    playbooks = [p for p in runtime.playbooks if p.event is not None and status[p.id] in ("live", "paused")]
    by_id = {p.id: p for p in playbooks}
    with engine.connect() as conn:
        types = load_account_types(conn)
        pending = _event_records(conn, types, batch, runtime.history_from(now), runtime.needs_contacts)
    if not pending:
        return
    found: list[Candidate] = []
    if playbooks:
        records = {r["id"] + f"#{eid}": (eid, r) for eid, r in pending}
        keyed = [{**r, "id": key} for key, (_, r) in records.items()]
        # one worker process, paid only when events wait: a batch stays under evaluate_batch_seconds
        with rule_engine(runtime, playbooks, workers=1) as rules:
            for key, matched in rules.match(keyed, now):
                eid, record = records[key]
                found += [Candidate(by_id[p], record["id"], record["segment"], eid) for p in sorted(matched)]
            record_failures(engine, [(records[key][1]["id"], f"event {records[key][0]}: {why}")
                                     for key, why in rules.failures], now)
    with engine.connect() as conn:
        yield [eid for eid, _ in pending], _eligible(conn, found, now, runtime.config.tz)


def process_events(runtime: Runtime, engine: Engine, now: datetime) -> int:
    total = 0
    while True:
        batches = list(event_candidates(runtime, engine, now))
        if not batches:
            return total
        paused = {pid for pid, status in statuses(runtime, engine).items() if status == "paused"}
        for event_ids, chunk in batches:
            with transaction(engine) as conn:
                total += _enter(conn, _first_per_pair(chunk), now, runtime.config.tz, paused)
                conn.execute(update(events).where(events.c.id.in_(event_ids)).values(processed_at=now))


def _first_per_pair(chunk: list[Candidate]) -> list[Candidate]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in chunk:
        if (c.playbook.id, c.account_id) not in seen:
            seen.add((c.playbook.id, c.account_id))
            out.append(c)
    return out


