"""Evaluation: stream accounts through the rules engine and enroll the eligible ones.

The same candidate stream serves `simulate` (read-only) and the daemon (which writes
enrollments), so both always agree on who would enter what.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Engine

from playbookd.config.durations import shift
from playbookd.engine import occurrences
from playbookd.engine.exits import exit_matching
from playbookd.engine.goals import held_at_entry, measure
from playbookd.engine.rules import RuleEngine
from playbookd.model.account import CHANGES, AccountRecord
from playbookd.model.conditions import All, Condition, Leaf, Not, uses_contacts
from playbookd.model.steps import Playbook, entry_group
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store.accounts import consume_changes, get_account, iter_accounts, load_account_types, records_by_id
from playbookd.store.chunks import chunked
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.people import attach_contacts
from playbookd.store.schema import enrollments, events

log = logging.getLogger("playbookd.engine")


@dataclass(frozen=True)
class Candidate:
    playbook: Playbook
    account_id: str
    segment: str
    event_id: int | None = None


def entry_condition(playbook: Playbook, project_exit: Condition | None = None) -> Condition:
    """Audience and trigger together, and not the project-wide exit: what the rules engine checks."""
    parts: list[Condition] = [] if project_exit is None else [Not(project_exit)]
    if playbook.segments is not None:
        parts.append(Leaf("segment", "in", tuple(playbook.segments)))
    if playbook.event is not None:
        parts.append(Leaf("event.name", "eq", playbook.event))
    parts.append(playbook.trigger)
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def worker_count(runtime: Runtime) -> int:
    configured = runtime.config.evaluation.workers
    return configured if configured > 0 else (os.cpu_count() or 1)


def rule_engine(runtime: Runtime, playbooks: Sequence[Playbook], workers: int | None = None) -> RuleEngine:
    rules = [(p.id, entry_condition(p, runtime.exit_when)) for p in playbooks]
    count = worker_count(runtime) if workers is None else workers
    return RuleEngine(rules, runtime.config.tz, workers=count, batch_size=runtime.config.evaluation.batch_size,
                      batch_seconds=runtime.config.limits.evaluate_batch_seconds)


def active_keyed(playbook_id: str, account_id: str) -> str:
    return f"{playbook_id}\x1f{account_id}"


def _history(conn: Connection, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[bool, datetime]]:
    """(playbook, account) -> (has an active enrollment, last entered_at), for the given pairs."""
    found: dict[tuple[str, str], tuple[bool, datetime]] = {}
    accounts = list({a for _, a in pairs})
    for batch in chunked(accounts, 500):
        query = select(enrollments.c.playbook_id, enrollments.c.account_id, enrollments.c.state,
                       enrollments.c.entered_at).where(enrollments.c.account_id.in_(batch))
        for row in conn.execute(query):
            key = (row.playbook_id, row.account_id)
            if key not in pairs:
                continue
            active, last = found.get(key, (False, aware(row.entered_at)))
            entered = aware(row.entered_at)
            assert entered is not None and last is not None
            # a failed enrollment keeps its place until retried: no second one alongside it
            found[key] = (active or row.state in ("active", "failed"), max(last, entered))
    return found


def entry_block(playbook: Playbook, seen: tuple[bool, datetime] | None, now: datetime, tz: ZoneInfo) -> str | None:
    """Why the account may not enter now, or None if it may."""
    if seen is None:
        return None
    active, last = seen
    if playbook.schedule is not None:  # once per occurrence, and not over an enrollment still running
        if active:
            return "still enrolled from an earlier occurrence"
        return "entered at this occurrence" if last >= now else None
    if active:
        return "already enrolled"
    if playbook.reenter_after is None:
        return "entered before; the playbook has no reenter_after"
    allowed = shift(last, playbook.reenter_after, tz)
    return None if allowed <= now else f"may re-enter from {allowed.isoformat()}"


def _eligible(conn: Connection, chunk: list[Candidate], now: datetime, tz: ZoneInfo) -> list[Candidate]:
    seen = _history(conn, {(c.playbook.id, c.account_id) for c in chunk})
    return [c for c in chunk if entry_block(c.playbook, seen.get((c.playbook.id, c.account_id)), now, tz) is None]


def scheduled_now(playbooks: Sequence[Playbook], engine: Engine, now: datetime, tz: ZoneInfo,
                  audited: bool) -> set[str]:
    """Calendar playbooks whose accounts enter at `now`: the occurrences the evaluation at `now` opened,
    or, for simulate (which records nothing), those it would open."""
    with engine.connect() as conn:
        if audited:
            return occurrences.opened_at(conn, now)
        found = occurrences.due(conn, playbooks, now, tz)
    return {item.playbook.id for item in found if not item.missed}


def _matches(runtime: Runtime, engine: Engine, now: datetime, workers: int | None,
             id_range: tuple[str | None, str | None] | None, audited: bool,
             playbooks: Sequence[Playbook], only: Sequence[str] | None = None) -> Iterator[Candidate]:
    if any(p.schedule for p in playbooks):  # a calendar playbook takes part only at its occurrence
        scheduled = scheduled_now(playbooks, engine, now, runtime.config.tz, audited)
        playbooks = [p for p in playbooks if p.schedule is None or p.id in scheduled]
    if not playbooks:
        return
    by_id = {p.id: p for p in playbooks}
    with engine.connect() as conn:
        types = load_account_types(conn)
    segments: dict[str, str] = {}
    changed: list[str] = []  # accounts whose changes this evaluation sees, and so consumes

    # contacts are read only when a condition evaluated now tests them (a newsletter due once a month)
    needs_contacts = any(uses_contacts(entry_condition(p, runtime.exit_when)) for p in playbooks)

    def records() -> Iterator[AccountRecord]:
        size = runtime.config.evaluation.batch_size
        since = runtime.history_from(now)
        found = records_by_id(engine, only, types, since) if only is not None else \
            iter_accounts(engine, types, size, id_range, since)
        for batch in chunked(found, size):
            if needs_contacts:
                with engine.connect() as conn:
                    attach_contacts(conn, batch)
            for record in batch:
                segments[record["id"]] = record["segment"]
                if record[CHANGES]:
                    changed.append(record["id"])
                yield record

    with rule_engine(runtime, playbooks, workers) as rules:
        for account_id, matched in rules.match(records(), now):
            segment = segments.pop(account_id, "")
            for pid in sorted(matched):
                yield Candidate(by_id[pid], account_id, segment)
            _trim(segments)
        if audited:
            record_failures(engine, rules.failures, now)
            consume_changes(engine, changed, now)


def record_failures(engine: Engine, failures: Sequence[tuple[str, str]], now: datetime) -> None:
    """Accounts the rules engine could not evaluate: logged and audited one by one, never dropped."""
    for account_id, why in failures:
        log.error("the rules engine could not evaluate account %s: %s", account_id, why,
                  extra={"account": account_id})
    if failures:
        with transaction(engine) as conn:
            audit.record_many(conn, [{"event": audit.EVALUATION_FAILED, "account_id": account_id,
                                      "reason": "rules_engine", "detail": {"error": why}, "at": now}
                                     for account_id, why in failures])


def _trim(segments: dict[str, str], keep: int = 100_000) -> None:
    # records that matched nothing are never popped; forget the oldest to bound memory
    while len(segments) > keep:
        segments.pop(next(iter(segments)))


def statuses(runtime: Runtime, engine: Engine) -> dict[str, str]:
    """Each playbook's status now: its file's, or what `playbookd playbooks pause|resume` set."""
    with engine.connect() as conn:
        return launch.statuses(runtime.playbooks, conn)


def live(runtime: Runtime, engine: Engine, which: Callable[[Playbook], bool] = lambda p: True) -> list[Playbook]:
    """The playbooks live now (their file's status or what `playbooks pause|resume` set) that `which` keeps."""
    status = statuses(runtime, engine)
    return [p for p in runtime.playbooks if which(p) and status[p.id] == "live"]


def candidates(runtime: Runtime, engine: Engine, now: datetime, workers: int | None = None,
               id_range: tuple[str | None, str | None] | None = None, audited: bool = False,
               playbooks: Sequence[Playbook] | None = None, only: Sequence[str] | None = None) -> Iterator[Candidate]:
    """Accounts (of `id_range`, or `only` these) that would enter a state-triggered playbook at `now`
    (the live ones, unless `playbooks` names others), eligibility applied; `audited` records the
    accounts the rules engine failed on (evaluation does, simulate changes nothing)."""
    if playbooks is None:
        playbooks = live(runtime, engine, lambda p: p.event is None)
    for chunk in chunked(_matches(runtime, engine, now, workers, id_range, audited, playbooks, only)):
        with engine.connect() as conn:
            yield from _eligible(conn, chunk, now, runtime.config.tz)


def _enter(conn: Connection, chunk: Sequence[Candidate], now: datetime, tz: ZoneInfo,
           paused: Collection[str] = ()) -> int:
    """Enroll the candidates, except those of a ramped or paused playbook: they join its waiting list,
    and engine.launch lets them in (a day's number at a time, or once it is live again)."""
    now_in: list[Candidate] = []
    waits: list[dict[str, Any]] = []
    for c in chunk:
        if c.playbook.launch.ramped or c.playbook.id in paused:
            waits.append({"playbook_id": c.playbook.id, "account_id": c.account_id, "segment": c.segment,
                          "event_id": c.event_id})
        else:
            now_in.append(c)
    launch.wait(conn, waits, now)
    return enroll(conn, now_in, now, tz)


def enroll(conn: Connection, chunk: Sequence[Candidate], now: datetime, tz: ZoneInfo) -> int:
    """Create enrollments (one active per playbook and account, whoever races) and audit them, each in
    its group and with whether its goal already held at entry."""
    met = held_at_entry(conn, [(c.playbook, c.account_id) for c in chunk], now, tz)
    rows = [{"playbook_id": c.playbook.id, "account_id": c.account_id, "state": "active", "step": 0,
             "step_key": c.playbook.key_at(0),
             "next_due_at": now, "entered_at": now, "event_id": c.event_id,
             "group_name": entry_group(c.playbook, c.account_id), "segment": c.segment or None,
             "goal_at_entry": (c.playbook.id, c.account_id) in met,
             "active_key": active_keyed(c.playbook.id, c.account_id)} for c in chunk]
    inserted = insert_ignore(conn, enrollments, rows)
    keys = [r["active_key"] for r in rows]
    created = conn.execute(select(enrollments.c.id, enrollments.c.playbook_id, enrollments.c.account_id,
                                  enrollments.c.group_name, enrollments.c.goal_at_entry)
                           .where(enrollments.c.active_key.in_(keys), enrollments.c.entered_at == now))
    audit.record_many(conn, [{"event": audit.ENTERED, "account_id": r.account_id, "playbook_id": r.playbook_id,
                              "enrollment_id": r.id, "at": now,
                              "detail": {"group": r.group_name, **({"goal_met_at_entry": True}
                                                                  if r.goal_at_entry else {})}}
                             for r in created])
    return inserted


def evaluate_range(runtime: Runtime, engine: Engine, now: datetime,
                   id_range: tuple[str | None, str | None] | None = None, workers: int | None = None) -> int:
    """Enroll eligible accounts of `id_range` in state-triggered playbooks; returns enrollments made."""
    total = 0
    for chunk in chunked(candidates(runtime, engine, now, workers, id_range, audited=True)):
        with transaction(engine) as conn:
            total += _enter(conn, chunk, now, runtime.config.tz)
    return total


def open_occurrences(runtime: Runtime, conn: Connection, now: datetime) -> list[str]:
    """Open the calendar occurrences due at `now` (see occurrences); the evaluation at `now` runs them.
    Only live playbooks' (a paused one opens none: resumed within catch_up, it runs the latest)."""
    status = launch.statuses(runtime.playbooks, conn)
    playbooks = [p for p in runtime.playbooks if p.schedule is not None and status[p.id] == "live"]
    return occurrences.open_due(conn, playbooks, now, runtime.config.tz)


def evaluate(runtime: Runtime, engine: Engine, now: datetime, workers: int | None = None) -> int:
    """Goals and exits first, then every account, then pending events; returns enrollments made."""
    measure(runtime, engine, now)
    exit_matching(runtime, engine, now)
    with transaction(engine) as conn:
        open_occurrences(runtime, conn, now)
    return evaluate_range(runtime, engine, now, None, workers) + process_events(runtime, engine, now)


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


def detail(candidate: Candidate) -> dict[str, Any]:
    return {"playbook": candidate.playbook.id, "account": candidate.account_id, "segment": candidate.segment}
