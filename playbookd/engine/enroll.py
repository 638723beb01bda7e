"""Evaluation: stream accounts through the rules engine and enroll the eligible ones.

The same candidate stream serves `simulate` (read-only) and the daemon (which writes
enrollments), so both always agree on who would enter what.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from playbookd.config.durations import shift
from playbookd.engine import narrow, occurrences
from playbookd.engine import scope as S
from playbookd.engine.goals import held_at_entry
from playbookd.engine.ledger import Ledger
from playbookd.engine.rules import RuleEngine
from playbookd.engine.scope import FULL, Scope
from playbookd.model.account import CHANGES, AccountRecord
from playbookd.model.conditions import All, Condition, Leaf, Not, contact_fields, leaves, uses_contacts
from playbookd.model.steps import Playbook, entry_group
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store.accounts import consume_changes, iter_accounts, load_account_types, records_by_id
from playbookd.store.chunks import chunked
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.marks import touch
from playbookd.store.people import attach_contacts
from playbookd.store.schema import enrollments

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


def reentry_at(playbook: Playbook, seen: tuple[bool, datetime] | None, tz: ZoneInfo) -> datetime | None:
    """When a cooldown that blocks the account ends: its answer may change then."""
    if seen is None or seen[0] or playbook.schedule is not None or playbook.reenter_after is None:
        return None
    return shift(seen[1], playbook.reenter_after, tz)


def _eligible(conn: Connection, chunk: list[Candidate], now: datetime, tz: ZoneInfo,
              ledger: Ledger | None = None) -> list[Candidate]:
    seen = _history(conn, {(c.playbook.id, c.account_id) for c in chunk})
    found = []
    for c in chunk:
        history = seen.get((c.playbook.id, c.account_id))
        if entry_block(c.playbook, history, now, tz) is None:
            found.append(c)
        elif ledger is not None and (until := reentry_at(c.playbook, history, tz)) is not None and until > now:
            ledger.cooldown(c.account_id, until)
    return found


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
             playbooks: Sequence[Playbook], only: Sequence[str] | None = None,
             scope: Scope = FULL, ledger: Ledger | None = None) -> Iterator[Candidate]:
    if any(p.schedule for p in playbooks):  # a calendar playbook takes part only at its occurrence
        scheduled = scheduled_now(playbooks, engine, now, runtime.config.tz, audited)
        playbooks = [p for p in playbooks if p.schedule is None or p.id in scheduled]
    if not playbooks:
        if ledger is not None:  # nothing to enter, but what the evaluation read is seen all the same
            _note(runtime, engine, id_range, scope, ledger)
        return
    if scope.accounts is None or only is not None:
        yield from _stream(runtime, engine, now, workers, id_range, audited, playbooks, only, ledger)
        return
    # incremental: every playbook on the accounts changed or due; a calendar playbook at its occurrence
    # and those whose answers move unseen (trends) on all the others too
    yield from _stream(runtime, engine, now, workers, id_range, audited, playbooks, sorted(scope.accounts), ledger)
    everyone = [p for p in playbooks if p.id in scope.everyone or p.schedule is not None]
    if everyone:
        yield from _stream(runtime, engine, now, workers, id_range, audited, everyone, None, None,
                           skip=scope.accounts)


def _note(runtime: Runtime, engine: Engine, id_range: tuple[str | None, str | None] | None, scope: Scope,
          ledger: Ledger) -> None:
    """The accounts of the scope through the ledger alone, with no rules engine: their `unseen` is
    cleared and their due time stored, or every later evaluation would read them again."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    size = runtime.config.evaluation.batch_size
    names = sorted({leaf.field for leaf in ledger.dues.leaves})
    found = iter_accounts(engine, types, size, id_range, None, ledger.read, None, names) \
        if scope.accounts is None else records_by_id(engine, sorted(scope.accounts), types, None, ledger.read)
    for batch in chunked(found, size):
        if ledger.dues.contact_leaves:
            with engine.connect() as conn:
                attach_contacts(conn, batch, names={leaf.field for leaf in ledger.dues.contact_leaves})
        for _ in ledger.watch(batch):
            pass


def _stream(runtime: Runtime, engine: Engine, now: datetime, workers: int | None,
            id_range: tuple[str | None, str | None] | None, audited: bool, playbooks: Sequence[Playbook],
            only: Sequence[str] | None, ledger: Ledger | None,
            skip: Collection[str] = ()) -> Iterator[Candidate]:
    """The matches of `playbooks` on the accounts (`only` these, else of `id_range`, less `skip`). Over
    a range, when SQL narrows every playbook's trigger (engine.narrow), only the accounts the store
    lets through go to the rules engine. Without a ledger (simulate, an incremental evaluation's trend
    and calendar playbooks) only those are read. With one every account is read all the same, for
    its due time and the changes it has, the WHERE read along as a column: one read for all, which
    costs less than two."""
    conds = [entry_condition(p, runtime.exit_when) for p in playbooks]
    split = None
    if only is None and runtime.config.evaluation.prefilter:
        split = narrow.split(list(zip(playbooks, conds, strict=True)), now, runtime.config.tz, engine.dialect.name)
    narrowed = split.where if split is not None and not split.open else None
    where, flag = (narrowed, None) if ledger is None else (None, narrowed)
    misses: set[str] = set()  # read for the ledger alone: the rules engine would match them to nothing
    by_id = {p.id: p for p in playbooks}
    with engine.connect() as conn:
        types = load_account_types(conn)
    segments: dict[str, str] = {}
    changed: list[str] = []  # accounts whose changes this evaluation sees, and so consumes

    # contacts are read only when a condition evaluated now tests them (a newsletter due once a month),
    # and of each only the fields tested
    needs_contacts = any(uses_contacts(c) for c in conds) or (ledger is not None and bool(ledger.dues.contact_leaves))
    contact_names = {name for c in conds for name in contact_fields(c)} | \
        ({leaf.field for leaf in ledger.dues.contact_leaves} if ledger is not None else set())

    # only the fields the conditions and due times read: often a fraction of each account; those of
    # the due times first, all that is read of an account the rules engine will not see
    due = sorted({leaf.field for leaf in ledger.dues.leaves}) if ledger is not None else []
    tested = {leaf.field for c in conds for leaf in leaves(c)}
    names = due + sorted(tested - set(due))

    def records() -> Iterator[AccountRecord]:
        size = runtime.config.evaluation.batch_size
        since = runtime.history_from(now)
        read = None if ledger is None else ledger.read
        found = records_by_id(engine, only, types, since, read) if only is not None else \
            iter_accounts(engine, types, size, id_range, since, read, where, names, flag, misses, len(due))
        for batch in chunked(found, size):
            batch = [r for r in batch if r["id"] not in skip]
            if needs_contacts:
                with engine.connect() as conn:
                    attach_contacts(conn, batch, names=contact_names)
            for record in batch if ledger is None else ledger.watch(batch):
                if record[CHANGES]:
                    changed.append(record["id"])
                if misses and record["id"] in misses:
                    misses.discard(record["id"])
                    continue
                segments[record["id"]] = record["segment"]
                yield record

    with rule_engine(runtime, playbooks, workers) as rules:
        for account_id, matched in rules.match(records(), now):
            segment = segments.pop(account_id, "")
            for pid in sorted(matched):
                yield Candidate(by_id[pid], account_id, segment)
            _trim(segments)
        if audited:
            record_failures(engine, rules.failures, now)
            # an account the pre-filter left out has no change pending (engine.narrow)
            consume_changes(engine, changed, now, S.reads_changes(runtime))


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
               playbooks: Sequence[Playbook] | None = None, only: Sequence[str] | None = None,
               scope: Scope = FULL, ledger: Ledger | None = None) -> Iterator[Candidate]:
    """Accounts (of `id_range`, or `only` these, or those of `scope`) that would enter a state-triggered
    playbook at `now` (the live ones, unless `playbooks` names others), eligibility applied; `audited`
    records the accounts the rules engine failed on (evaluation does, simulate changes nothing), and
    `ledger` what the evaluation learnt of each account (engine.ledger)."""
    if playbooks is None:
        playbooks = live(runtime, engine, lambda p: p.event is None)
    found = _matches(runtime, engine, now, workers, id_range, audited, playbooks, only, scope, ledger)
    for chunk in chunked(found):
        with engine.connect() as conn:
            yield from _eligible(conn, chunk, now, runtime.config.tz, ledger)


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
    # the next evaluation checks the new enrollment's exits even if nothing else moves (advance does too)
    touch(conn, [c.account_id for c in chunk])
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
                   id_range: tuple[str | None, str | None] | None = None, workers: int | None = None,
                   scope: Scope = FULL) -> int:
    """Enroll eligible accounts of `id_range` (those of `scope`) in state-triggered playbooks; returns
    enrollments made."""
    playbooks = live(runtime, engine, lambda p: p.event is None)
    if not scope.full:  # the accounts not looked at qualify as they did: they keep their place in line
        with transaction(engine) as conn:
            launch.keep_waiting(conn, [p.id for p in playbooks if p.id not in scope.everyone and p.schedule is None],
                                scope.accounts or {}, id_range, now)
    ledger = Ledger(S.due_times(runtime, runtime.playbooks), now, scope.read_first)
    total = 0
    for chunk in chunked(candidates(runtime, engine, now, workers, id_range, True, playbooks, None, scope, ledger)):
        with transaction(engine) as conn:
            total += _enter(conn, chunk, now, runtime.config.tz)
    ledger.settle(engine)
    return total


def open_occurrences(runtime: Runtime, conn: Connection, now: datetime) -> list[str]:
    """Open the calendar occurrences due at `now` (see occurrences); the evaluation at `now` runs them.
    Only live playbooks' (a paused one opens none: resumed within catch_up, it runs the latest)."""
    status = launch.statuses(runtime.playbooks, conn)
    playbooks = [p for p in runtime.playbooks if p.schedule is not None and status[p.id] == "live"]
    return occurrences.open_due(conn, playbooks, now, runtime.config.tz)


def detail(candidate: Candidate) -> dict[str, Any]:
    return {"playbook": candidate.playbook.id, "account": candidate.account_id, "segment": candidate.segment}
