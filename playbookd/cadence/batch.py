"""What a batch of due enrollments needs, read and rendered for all of them at once.

The enrollments of one transaction (cadence.advance) share one query for their contacts, one per
category for suppressions, and worker calls that render many emails each: the first email step
each enrollment stands at is rendered ahead, before any step runs. Steps still run one enrollment
at a time, in order, and take an email rendered ahead only for the same step and contact and an
account equal to the one it was rendered for (cadence.context.Batch): a step before it that changed
the account simply means rendering it again, as without a batch; the context is built once either way.

On SQLite those renders are done before the batch's transaction (plan_early, render_early: no write
lock held meanwhile), and `prepare` inside it reads contacts and suppressions again and takes each
email rendered first only where it would render the same email now, else renders it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, update

from playbookd.cadence.context import Ahead, Batch, Early, Job, Key, StepContext, same
from playbookd.cadence.steps import email_context
from playbookd.delivery.recipients import ACTIVE, Contact, Filter, addressed, load_contacts, suppressed_for
from playbookd.model.steps import CONTROL, EmailStep, Variant, variant_for
from playbookd.runtime import Runtime
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


class Wanted(NamedTuple):
    """An email the batch may render ahead: for which enrollment, step and contact, and from what."""

    key: Key
    ctx: StepContext
    contact: Contact
    template: str
    stand: tuple[Any, ...]


class Planned(NamedTuple):
    """An email to render before the transaction (render_early), with the job built for it."""

    wanted: Wanted
    url: str
    job: Job


def _stand(ctx: StepContext) -> tuple[Any, ...]:
    row = ctx.enrollment
    return row.step, row.step_key, row.group_name, row.event_id


def _wanted(conn: Connection, contexts: Sequence[StepContext]) -> tuple[Batch, list[Wanted]]:
    """The batch's contacts and suppressions, read for `contexts` (each gets the batch), and the first
    email each enrollment stands at, for every contact it may go to."""
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
    found = []
    for ctx, index, picked, variant in plans:
        suppressed = batch.suppressed[ctx.playbook.category][1]
        stand = _stand(ctx)  # the enrollment's, shared by its contacts' emails
        for contact in picked:
            if contact.status == ACTIVE and contact.email not in suppressed:
                found.append(Wanted((ctx.enrollment.id, index, contact.id), ctx, contact, variant.template, stand))
    return batch, found


def _planned(want: Wanted) -> Planned:
    url, context = email_context(want.ctx, want.contact)
    return Planned(want, url, (want.template, want.ctx.account["segment"], context))


def _unchanged(found: Early, want: Wanted) -> bool:
    """Whether the email rendered first would be rendered from the same job now: same place, template
    and secret, and an account, contact and event the same in type and printed form (context.same)."""
    ctx = want.ctx
    return (found.template == want.template and found.secret == ctx.secret and same(found.stand, want.stand)
            and same(found.event, ctx.event) and same(found.contact, want.contact.context())
            and same(found.account, ctx.account))


def prepare(conn: Connection, contexts: Sequence[StepContext], early: Mapping[Key, Early] | None = None) -> Batch:
    """Read and render ahead for `contexts`, and attach the batch to each. An email in `early` is
    taken instead of rendered when its enrollment stands where it stood and it renders from the same
    values as now: contacts and suppressions are read here all the same, so an address unsubscribed
    or suppressed since is never rendered for, nor sent to."""
    batch, wanted = _wanted(conn, contexts)
    todo = []
    for want in wanted:
        found = early.get(want.key) if early else None
        if found is not None and _unchanged(found, want):
            batch.ahead[want.key] = Ahead(found.url, dict(want.ctx.account), found.result)
        else:
            todo.append(_planned(want))
    if todo:
        results = contexts[0].runtime.templates.render_many([plan.job for plan in todo])
        for plan, result in zip(todo, results, strict=True):
            if result is not None:
                batch.ahead[plan.wanted.key] = Ahead(plan.url, dict(plan.wanted.ctx.account), result)
    return batch


def plan_early(conn: Connection, contexts: Sequence[StepContext]) -> list[Planned]:
    """What `prepare` would render for `contexts`, read on `conn` but not rendered yet (render_early)."""
    return [_planned(want) for want in _wanted(conn, contexts)[1]]


def render_early(runtime: Runtime, planned: Sequence[Planned]) -> dict[Key, Early]:
    """The emails `plan_early` found, rendered for a later `prepare` to take or not. Each keeps what
    its job was built from: the record read then, used for nothing else once planned."""
    if not planned:
        return {}
    results = runtime.templates.render_many([plan.job for plan in planned])
    early = {}
    for plan, result in zip(planned, results, strict=True):
        want = plan.wanted
        if result is not None:
            early[want.key] = Early(want.stand, want.template, want.ctx.secret, want.ctx.account,
                                    want.contact.context(), want.ctx.event, plan.url, result)
    return early


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
