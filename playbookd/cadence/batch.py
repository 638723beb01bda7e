"""What a batch of due enrollments needs, read and rendered for all of them at once.

The enrollments of one transaction (cadence.advance) share one query for their contacts, one per
category for suppressions, and worker calls that render many emails each: the first email step
each enrollment stands at is rendered ahead, before any step runs. Steps still run one enrollment
at a time, in order, and take an email rendered ahead only for the same step and contact and an
account equal to the one it was rendered for (cadence.context.Batch): a step before it that changed
the account simply means rendering it again, as without a batch; the context is built once either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, update

from playbookd.cadence.context import Ahead, Batch, StepContext
from playbookd.cadence.steps import email_context
from playbookd.delivery.recipients import ACTIVE, Contact, Filter, addressed, load_contacts, suppressed_for
from playbookd.model.steps import CONTROL, EmailStep, Variant, variant_for
from playbookd.store.database import insert_ignore_many
from playbookd.store.schema import enrollments, outbox

_Plan = tuple[StepContext, int, list[Contact], Variant]


def _first_email(ctx: StepContext, batch: Batch) -> _Plan | None:
    """The email step this enrollment stands at, whom it addresses and with which variant."""
    index, _ = ctx.playbook.position(ctx.enrollment.step, ctx.enrollment.step_key)
    if index >= len(ctx.playbook.steps) or ctx.enrollment.group_name == CONTROL:
        return None
    step = ctx.playbook.steps[index]
    if not isinstance(step, EmailStep):
        return None
    only = Filter(step.only, ctx.now, ctx.runtime.config.tz) if step.only is not None else None
    picked = addressed(batch.contacts.get(ctx.account["id"], []), step.to, only)
    variant = variant_for(ctx.playbook, index, step, ctx.enrollment.group_name, ctx.account["id"])
    return ctx, index, picked, variant


def prepare(conn: Connection, contexts: Sequence[StepContext]) -> Batch:
    """Read and render ahead for `contexts`, and attach the batch to each."""
    batch = Batch(contacts=load_contacts(conn, [ctx.account["id"] for ctx in contexts]))
    plans = []
    for ctx in contexts:
        ctx.batch = batch
        plan = _first_email(ctx, batch)
        if plan is not None:
            plans.append(plan)
    wanted: dict[str, set[str]] = {}
    for ctx, _, picked, _ in plans:
        wanted.setdefault(ctx.playbook.category, set()).update(c.email for c in picked)
    for category, emails in wanted.items():
        batch.suppressed[category] = (frozenset(emails), suppressed_for(conn, emails, category))
    jobs, keys = [], []
    for ctx, index, picked, variant in plans:
        suppressed = batch.suppressed[ctx.playbook.category][1]
        for contact in picked:
            if contact.status == ACTIVE and contact.email not in suppressed:
                url, context = email_context(ctx, contact)
                jobs.append((variant.template, ctx.account["segment"], context))
                keys.append(((ctx.enrollment.id, index, contact.id), url, dict(ctx.account)))
    if jobs:
        results = contexts[0].runtime.templates.render_many(jobs)
        for (key, url, account), result in zip(keys, results, strict=True):
            if result is not None:
                batch.ahead[key] = Ahead(url, account, result)
    return batch


def write_queued(conn: Connection, batch: Batch) -> None:
    """The outbox rows the batch's email steps queued so far, in one executemany; a key already there
    (a retried step) is skipped, so nothing is queued twice."""
    rows, batch.queued = batch.queued, []
    insert_ignore_many(conn, outbox, rows)


_MOVE = (update(enrollments).where(enrollments.c.id == bindparam("move_id"))
         .values(step=bindparam("move_step"), step_key=bindparam("move_key"), next_due_at=bindparam("move_due")))


def write(conn: Connection, batch: Batch) -> None:
    """What the batch's steps left to write as the transaction ends: its outbox rows, then where each
    enrollment that reached a wait now stands (one executemany each)."""
    write_queued(conn, batch)
    moves, batch.moves = batch.moves, []
    if moves:
        conn.execute(_MOVE, moves)
