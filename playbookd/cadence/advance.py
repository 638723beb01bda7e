"""Cadences: advance each due enrollment through its steps, a batch of enrollments to a transaction.

Before every step `exit_when` is checked; `wait` sets when the enrollment is next due. The control
group goes through the same waits and exits with every action held back.
Every decision is audited with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError

from playbookd.cadence.batch import Planned, plan_early, prepare, render_early, write, write_queued
from playbookd.cadence.context import Early, Key, StepContext
from playbookd.cadence.steps import StepFailed, run_step
from playbookd.cadence.task_events import wake_waits
from playbookd.delivery import clicks
from playbookd.delivery.unsubscribe import known_secret, resolve_secret
from playbookd.engine import goals, statuses
from playbookd.engine.exits import ACCOUNT_GONE, PLAYBOOK_GONE, exit_reason
from playbookd.errors import UserError
from playbookd.model import evaluation
from playbookd.model.account import AccountRecord
from playbookd.model.steps import CONTROL, Step, WaitStep, step_kind
from playbookd.runtime import Runtime
from playbookd.store import audit, launch
from playbookd.store.accounts import load_account_types, records_in
from playbookd.store.database import aware, transaction
from playbookd.store.marks import touch
from playbookd.store.people import attach_contacts
from playbookd.store.schema import enrollments, events

log = logging.getLogger("playbookd.cadence")

# Enrollments advanced in one transaction: their reads, renders and commit shared. A crash or store
# error loses the batch's work, never half of it (nothing is queued that is not recorded), and on
# SQLite the batch holds the write lock that long, so it is kept small.
TRANSACTION = 50


def _exit_reason(ctx: StepContext) -> str | None:
    return exit_reason(ctx.runtime, ctx.playbook, ctx.account, ctx.now)


def _end(conn: Connection, enrollment: Row[Any], state: str, step: int, reason: str | None, now: datetime) -> None:
    conn.execute(update(enrollments).where(enrollments.c.id == enrollment.id).values(
        state=state, step=step, next_due_at=None, finished_at=now, reason=reason, active_key=None))
    touch(conn, [enrollment.account_id])  # the account may enter again: the next evaluation looks
    audit.record(conn, audit.EXITED if state == "exited" else audit.COMPLETED, account_id=enrollment.account_id,
                 playbook_id=enrollment.playbook_id, enrollment_id=enrollment.id, reason=reason, at=now)


def _finish(ctx: StepContext, state: str, step: int, reason: str | None) -> None:
    _end(ctx.conn, ctx.enrollment, state, step, reason, ctx.now)


def _fail(ctx: StepContext, step: int, error: str) -> None:
    _mark_failed(ctx.conn, ctx.enrollment, step, ctx.playbook.key_at(step), error, ctx.now)


def _mark_failed(conn: Connection, enrollment: Row[Any], step: int, step_key: str | None, error: str,
                 now: datetime) -> None:
    """Stop at the step that could not run, keeping the enrollment's place (and its hold on the
    account) until `playbookd enrollments retry` runs the step again."""
    conn.execute(update(enrollments).where(enrollments.c.id == enrollment.id).values(
        state="failed", step=step, step_key=step_key, next_due_at=None, reason=error))
    touch(conn, [enrollment.account_id])  # no longer checked for exits until retried
    audit.record(conn, audit.STEP_FAILED, account_id=enrollment.account_id, playbook_id=enrollment.playbook_id,
                 enrollment_id=enrollment.id, step=step, reason="step_failed", at=now, detail={"error": error})
    log.error("enrollment %s (%s, %s) failed: %s", enrollment.id, enrollment.playbook_id, enrollment.account_id,
              error, extra={"account": enrollment.account_id, "playbook": enrollment.playbook_id})


def _goal_ends(ctx: StepContext) -> bool:
    """The goal, checked when steps come due as at every evaluation; True when its being met ended the
    enrollment (`goal.exit`)."""
    tz = ctx.runtime.config.tz
    goal = ctx.playbook.goal
    if goal is None or not goals.watched(ctx.playbook, ctx.enrollment, ctx.now, tz):
        return False
    if not evaluation.evaluate(goal.when, ctx.account, ctx.now, tz):
        return False
    return goals.mark_met(ctx.conn, ctx.enrollment, ctx.playbook, ctx.now)


def _when_false(ctx: StepContext, step: Step) -> bool:
    """A step's `when:` over the account and what happened in this enrollment (clicks, emails, days)."""
    if step.when is None:
        return False
    if ctx.batch is not None:
        write_queued(ctx.conn, ctx.batch)  # `enrollment.emails_sent` counts the emails queued just before
    record = {**ctx.account, **clicks.enrollment_facts(ctx.conn, ctx.enrollment, ctx.now)}
    return not evaluation.evaluate(step.when, record, ctx.now, ctx.runtime.config.tz)


def _run(ctx: StepContext, index: int) -> datetime | None:
    """Run a step; the control group waits as the others do but is held back from every action."""
    step = ctx.playbook.steps[index]
    if ctx.enrollment.group_name == CONTROL and not isinstance(step, WaitStep):
        ctx.log(audit.STEP_SKIPPED, index, "control_group", detail={"action": step_kind(step)})
        return None
    if _when_false(ctx, step):
        ctx.log(audit.STEP_SKIPPED, index, "when_false", detail={"action": step_kind(step)})
        return None
    return run_step(ctx, index, step)


def _move(ctx: StepContext, index: int, due: datetime) -> None:
    """The enrollment waits at step `index` until `due`; in a batch, written with the others."""
    key = ctx.playbook.key_at(index)
    if ctx.batch is not None:
        ctx.batch.moves.append({"move_id": ctx.enrollment.id, "move_step": index, "move_key": key, "move_due": due})
    else:
        ctx.conn.execute(update(enrollments).where(enrollments.c.id == ctx.enrollment.id)
                         .values(step=index, step_key=key, next_due_at=due))


def advance_one(ctx: StepContext) -> None:
    """Run steps from the enrollment's position until a wait, the end, or an exit."""
    index, moved = ctx.playbook.position(ctx.enrollment.step, ctx.enrollment.step_key)
    if moved:
        ctx.log(audit.STEP_MOVED, index, "playbook_edited", detail={"note": moved})
    if _goal_ends(ctx):
        return None
    while index < len(ctx.playbook.steps):
        reason = _exit_reason(ctx)
        if reason:
            return _finish(ctx, "exited", index, reason)
        try:
            due = _run(ctx, index)
        except StepFailed as exc:
            return _fail(ctx, index, str(exc))
        index += 1
        if due is not None:
            return _move(ctx, index, due)
    return _finish(ctx, "completed", index, None)


def _claim(conn: Connection, ids: Sequence[int], now: datetime) -> list[Row[Any]]:
    """Re-read due enrollments inside this transaction; on PostgreSQL lock them, skipping those
    another replica holds."""
    query = select(enrollments).where(enrollments.c.id.in_(list(ids)), enrollments.c.state == "active",
                                      enrollments.c.next_due_at <= now).order_by(enrollments.c.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def _records(runtime: Runtime, conn: Connection, rows: Sequence[Row[Any]], types: dict[str, str],
             now: datetime) -> dict[str, AccountRecord]:
    records = records_in(conn, {row.account_id for row in rows}, types, runtime.history_from(now))
    if runtime.needs_contacts:
        attach_contacts(conn, list(records.values()))
    return records


def _contexts(runtime: Runtime, conn: Connection, rows: Sequence[Row[Any]], records: dict[str, AccountRecord],
              now: datetime, secret: bytes) -> tuple[list[StepContext], list[tuple[Row[Any], str]]]:
    """A step context for each enrollment whose playbook and account are there, and the others with
    why they end."""
    contexts, gone = [], []
    for row in rows:
        playbook = runtime.playbook(row.playbook_id)
        account = records.get(row.account_id)
        if playbook is None or playbook.status == "retired":
            gone.append((row, PLAYBOOK_GONE))
        elif account is None:
            gone.append((row, ACCOUNT_GONE))
        else:
            contexts.append(StepContext(runtime, conn, row, playbook, account, now, secret, _event(conn, row.event_id)))
    return contexts, gone


def _plan_first(runtime: Runtime, engine: Engine, ids: Sequence[int], now: datetime, types: dict[str, str],
                secret: bytes) -> list[Planned]:
    """On SQLite, what the batch's emails are rendered from before its transaction takes the one
    write lock, so that delivery's claims and outcomes commit meanwhile. Read outside any
    transaction: each statement reads on its own, and the connection is closed before rendering and
    before the write transaction begins (one that read first would fail to write with SQLITE_BUSY
    once another connection committed). Nothing read here is trusted: the transaction reads it all
    again (cadence.batch.prepare)."""
    with engine.connect() as conn:
        rows = _claim(conn, ids, now)
        contexts, _ = _contexts(runtime, conn, rows, _records(runtime, conn, rows, types, now), now, secret)
        return plan_early(conn, contexts)


def _render_first(ahead: ThreadPoolExecutor, runtime: Runtime, engine: Engine, ids: Sequence[int], now: datetime,
                  types: dict[str, str], secret: bytes | None) -> Future[dict[Key, Early]] | None:
    """The batch's emails read for now and rendered in the `ahead` thread: the render worker works
    while this thread runs the transaction before (the waiting on it releases the GIL), so on two
    cores the renders and the queueing overlap instead of taking turns. None without a secret."""
    if secret is None:
        return None
    planned = _plan_first(runtime, engine, ids, now, types, secret)
    return ahead.submit(render_early, runtime, planned)


def _advance_batch(runtime: Runtime, engine: Engine, ids: Sequence[int], now: datetime,
                   types: dict[str, str], early: Mapping[Key, Early] | None = None) -> None:
    """Enrollments of distinct accounts advanced in one transaction: all of their steps are
    committed together or, on a crash or a store error, none (they stay due and run again).
    `early`: their emails rendered before it (_render_first), each taken only if still the same."""
    with transaction(engine) as conn, audit.held(conn):  # the batch's audit entries: one INSERT
        rows = _claim(conn, ids, now)
        if not rows:
            return
        records = _records(runtime, conn, rows, types, now)
        secret = resolve_secret(conn, runtime.config.delivery.unsubscribe_secret)
        contexts, gone = _contexts(runtime, conn, rows, records, now, secret)
        for row, reason in gone:
            _end(conn, row, "exited", row.step, reason, now)
        batch = prepare(conn, contexts, early)
        for ctx in contexts:
            advance_one(ctx)
        write(conn, batch)


def _advance_apart(runtime: Runtime, engine: Engine, ids: Sequence[int], now: datetime,
                   types: dict[str, str], early: Mapping[Key, Early] | None) -> None:
    """A batch the store refuses for a value one of its enrollments would write runs again one
    enrollment at a time, and the one refused fails alone with the store's reason: else it would fail
    every batch it is in, at every cycle. A store that cannot be reached still stops the run."""
    try:
        _advance_batch(runtime, engine, ids, now, types, early)
    except DataError as exc:
        if len(ids) > 1:
            for one in ids:
                _advance_apart(runtime, engine, [one], now, types, early)
            return
        _refused(engine, ids[0], f"the database refused what this step writes: {exc.orig}", now)


def _refused(engine: Engine, enrollment_id: int, error: str, now: datetime) -> None:
    with transaction(engine) as conn:
        row = conn.execute(select(enrollments).where(enrollments.c.id == enrollment_id)).first()
        if row is not None and row.state == "active":
            _mark_failed(conn, row, row.step, row.step_key, error, now)


def _batches(due: Sequence[Row[Any, Any]], size: int) -> Iterator[list[int]]:
    """Enrollment ids, `size` at most at a time and no two of one account together: a step may change
    its account (`set`), which the next enrollment of that account must read as changed."""
    waiting = list(due)
    while waiting:
        batch: list[int] = []
        accounts: set[str] = set()
        later = []
        for row in waiting:
            if len(batch) < size and row.account_id not in accounts:
                batch.append(row.id)
                accounts.add(row.account_id)
            else:
                later.append(row)
        yield batch
        waiting = later


def _event(conn: Connection, event_id: int | None) -> dict[str, Any] | None:
    if event_id is None:
        return None
    query = select(events.c.name, events.c.data, events.c.occurred_at).where(events.c.id == event_id)
    row = conn.execute(query).first()
    return None if row is None else {**(row.data or {}), "name": row.name, "occurred_at": aware(row.occurred_at)}


def _secret_first(runtime: Runtime, engine: Engine) -> bytes | None:
    """The unsubscribe secret the emails of each batch are rendered with before its transaction, on
    SQLite; None elsewhere (PostgreSQL locks rows, not the store: rendering inside holds up no one).
    Read without a transaction once it is kept: only the first cycle makes it, under the write lock."""
    if engine.dialect.name != "sqlite":
        return None
    configured = runtime.config.delivery.unsubscribe_secret
    with engine.connect() as conn:
        found = known_secret(conn, configured)
    if found is not None:
        return found
    with transaction(engine) as conn:
        return resolve_secret(conn, configured)


def advance(runtime: Runtime, engine: Engine, now: datetime, batch: int = 500) -> int:
    """Advance every enrollment due at `now`, except those of a paused or draft playbook (they keep
    their place and the time their wait has left); returns how many were advanced."""
    statuses.apply(runtime, engine, now)
    wake_waits(runtime, engine, now)  # a closed task ends its `until_task_done` wait: due now
    with engine.connect() as conn:
        types = load_account_types(conn)
    first = _secret_first(runtime, engine)
    done = 0
    last = 0
    # one thread that renders the next batch's emails in the render worker while this one queues
    # the batch before; on PostgreSQL (no `first`) it stays idle
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="playbookd-render-first") as ahead:
        while True:
            with engine.connect() as conn:
                held = launch.holding(runtime.playbooks, conn)
                due = list(conn.execute(select(enrollments.c.id, enrollments.c.account_id).where(
                    enrollments.c.state == "active", enrollments.c.next_due_at <= now, enrollments.c.id > last,
                    enrollments.c.playbook_id.not_in(held))
                    .order_by(enrollments.c.id).limit(batch)))
            if not due:
                return done
            batches = list(_batches(due, TRANSACTION))
            following = _render_first(ahead, runtime, engine, batches[0], now, types, first)
            for i, ids in enumerate(batches):
                current = following
                if i + 1 < len(batches):  # read while the worker renders this batch's emails
                    following = _render_first(ahead, runtime, engine, batches[i + 1], now, types, first)
                early = current.result() if current is not None else None
                _advance_apart(runtime, engine, ids, now, types, early)
            done += len(due)
            last = due[-1].id


def retry(engine: Engine, ids: Sequence[int], playbook_id: str | None, now: datetime) -> int:
    """Run failed enrollments again from the step that failed (after the template or URL is fixed)."""
    with transaction(engine) as conn:
        query = select(enrollments.c.id, enrollments.c.state, enrollments.c.account_id,
                       enrollments.c.playbook_id, enrollments.c.step)
        query = query.where(enrollments.c.id.in_(list(ids))) if ids else query.where(
            enrollments.c.playbook_id == playbook_id, enrollments.c.state == "failed")
        rows = {r.id: r for r in conn.execute(query)}
        problems = [f"enrollment {i}: no such enrollment" for i in ids if i not in rows]
        problems += [f"enrollment {r.id}: is {r.state}, not failed" for r in rows.values() if r.state != "failed"]
        if problems:
            raise UserError("; ".join(problems))
        if rows:
            conn.execute(update(enrollments).where(enrollments.c.id.in_(list(rows))).values(
                state="active", next_due_at=now, reason=None))
            touch(conn, [r.account_id for r in rows.values()])  # checked for exits again
        audit.record_many(conn, [{"event": audit.RETRIED, "account_id": r.account_id, "playbook_id": r.playbook_id,
                                  "enrollment_id": r.id, "step": r.step, "at": now} for r in rows.values()])
    return len(rows)


def end_by_operator(engine: Engine, ids: Sequence[int], note: str, now: datetime) -> int:
    """An operator ends active or failed enrollments; nothing more is sent for them."""
    with transaction(engine) as conn:
        rows = {r.id: r for r in conn.execute(select(enrollments).where(enrollments.c.id.in_(list(ids))))}
        problems = [f"enrollment {i}: no such enrollment" for i in ids if i not in rows]
        problems += [f"enrollment {r.id}: is {r.state} already" for r in rows.values()
                     if r.state not in ("active", "failed")]
        if problems:
            raise UserError("; ".join(problems))
        for row in rows.values():
            _end(conn, row, "exited", row.step, f"ended by an operator: {note}", now)
    return len(rows)
