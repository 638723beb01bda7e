"""Cadences: advance each due enrollment through its steps, one transaction per enrollment.

Before every step `exit_when` is checked. Email steps render into the outbox (unique key
per enrollment, step and contact, so a retry never queues twice); `wait` sets when the
enrollment is next due; tasks, webhooks and field updates are stored. Every decision is
audited with its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.engine import Engine

from playbookd.config.settings import expand_env
from playbookd.delivery.recipients import Contact, eligible, load_contacts
from playbookd.delivery.transports import make_message_id
from playbookd.delivery.unsubscribe import resolve_secret, sign, unsubscribe_url
from playbookd.errors import UserError
from playbookd.model import evaluation
from playbookd.model.account import CHANGES, AccountRecord
from playbookd.model.playbooks import EmailStep, Playbook, SetStep, Step, TaskStep, Variant, WaitStep, WebhookStep
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import aware, insert_ignore
from playbookd.store.schema import enrollments, events, outbox, tasks, webhooks
from playbookd.store.set_fields import set_fields


@dataclass
class StepContext:
    runtime: Runtime
    conn: Connection
    enrollment: Row[Any]
    playbook: Playbook
    account: AccountRecord
    now: datetime
    secret: bytes
    event: dict[str, Any] | None = None

    def context(self, contact: dict[str, Any] | None, unsubscribe: str) -> dict[str, Any]:
        return template_context(self.runtime, self.playbook, self.account, contact, unsubscribe, self.event)

    def log(self, event: str, step: int | None, reason: str | None = None, **kw: Any) -> None:
        audit.record(self.conn, event, account_id=self.account["id"], playbook_id=self.playbook.id,
                     enrollment_id=self.enrollment.id, step=step, reason=reason, at=self.now, **kw)


def pick_variant(variants: Sequence[Variant], playbook_id: str, account_id: str) -> Variant:
    """Weighted choice that is stable for an account: the same account always sees the same variant."""
    if len(variants) == 1:
        return variants[0]
    digest = hashlib.sha256(f"{playbook_id}\x1f{account_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in variants)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]


def csm(account: AccountRecord, company: str) -> dict[str, Any]:
    email = account.get("csm_email")
    if not email:
        return {"name": f"The {company} Success team", "email": None}
    name = account.get("csm_name") or " ".join(p.capitalize() for p in email.split("@")[0].replace("_", ".").split("."))
    return {"name": name, "email": email}


def template_context(runtime: Runtime, playbook: Playbook, account: AccountRecord,
                     contact: dict[str, Any] | None, unsubscribe: str,
                     event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every key a template may use; unknown values are None, never missing. `event` in event playbooks."""
    fields = {name: None for name in runtime.types}
    fields.update({k: v for k, v in account.items() if k != CHANGES})
    company = runtime.config.company
    return {
        "account": fields, "contact": contact or {}, "segment": account.get("segment"),
        "playbook": {"id": playbook.id, "name": playbook.name, "category": playbook.category},
        "csm": csm(account, company.name), "company": company.model_dump(),
        "unsubscribe_url": unsubscribe, **({"event": event} if event is not None else {}),
    }


def _headers(ctx: StepContext, step: int, variant: Variant) -> dict[str, str]:
    return {"X-Playbook": ctx.playbook.id, "X-Account": ctx.account["id"],
            "X-Playbook-Step": str(step), **({"X-Variant": variant.name} if variant.name else {})}


def _queue_email(ctx: StepContext, index: int, step: EmailStep, contact: Contact, variant: Variant) -> None:
    token = sign(ctx.secret, contact.email, ctx.playbook.category)
    url = unsubscribe_url(ctx.runtime.config.company.public_url, token)
    context = ctx.context(contact.context(), url)
    rendered = ctx.runtime.templates.render(variant.template, ctx.account["segment"], context)
    key = f"{ctx.enrollment.id}:{index}:{contact.id}"
    domain = parseaddr(ctx.runtime.config.delivery.from_)[1].rpartition("@")[2] or "playbookd.local"
    insert_ignore(ctx.conn, outbox, [{
        "key": key, "message_id": make_message_id(key, domain), "enrollment_id": ctx.enrollment.id,
        "playbook_id": ctx.playbook.id, "account_id": ctx.account["id"], "contact_id": contact.id,
        "to_addr": contact.email, "template": rendered.template, "variant": variant.name or None,
        "category": ctx.playbook.category, "priority": ctx.playbook.priority, "subject": rendered.subject,
        "html": rendered.html, "text": rendered.text, "headers": {**_headers(ctx, index, variant),
                                                                  "List-Unsubscribe-URL": url},
        "state": "queued", "attempts": 0, "not_before": ctx.now, "created_at": ctx.now,
    }])
    ctx.log(audit.QUEUED, index, contact=contact.email, detail={"template": rendered.template,
                                                                 "variant": variant.name or None})


def run_email(ctx: StepContext, index: int, step: EmailStep) -> None:
    people = load_contacts(ctx.conn, [ctx.account["id"]])[ctx.account["id"]]
    ok, skipped = eligible(ctx.conn, people, step.to, ctx.playbook.category)
    for contact, reason in skipped:
        ctx.log(audit.STEP_SKIPPED, index, reason, contact=contact.email)
    if not ok:
        ctx.log(audit.STEP_SKIPPED, index, "no_recipient", detail={"to": list(step.to)})
        return
    variant = pick_variant(step.variants, ctx.playbook.id, ctx.account["id"])
    for contact in ok:
        try:
            _queue_email(ctx, index, step, contact, variant)
        except UserError as exc:
            ctx.log(audit.STEP_SKIPPED, index, "template_error", contact=contact.email, detail={"error": str(exc)})
    ctx.log(audit.STEP_DONE, index, detail={"action": "email", "recipients": len(ok)})


def run_task(ctx: StepContext, index: int, step: TaskStep) -> None:
    context = ctx.context(None, "")
    title = ctx.runtime.templates.render_string(step.title, context)
    assignee = ctx.account.get("csm_email") if step.assign == "csm" else step.assign
    due = ctx.now + timedelta(seconds=step.due_in) if step.due_in else None
    insert_ignore(ctx.conn, tasks, [{
        "key": f"{ctx.enrollment.id}:{index}", "account_id": ctx.account["id"], "playbook_id": ctx.playbook.id,
        "enrollment_id": ctx.enrollment.id, "title": title, "assignee": assignee, "due_at": due,
        "state": "open", "created_at": ctx.now}])
    ctx.log(audit.STEP_DONE, index, detail={"action": "task", "title": title, "assignee": assignee})


def _render_body(ctx: StepContext, body: Any, context: dict[str, Any]) -> Any:
    if isinstance(body, str):
        return ctx.runtime.templates.render_string(body, context)
    if isinstance(body, dict):
        return {k: _render_body(ctx, v, context) for k, v in body.items()}
    if isinstance(body, list):
        return [_render_body(ctx, v, context) for v in body]
    return body


def run_webhook(ctx: StepContext, index: int, step: WebhookStep) -> None:
    url = expand_env(step.url)
    if not url:
        ctx.log(audit.STEP_SKIPPED, index, "webhook_url_unset", detail={"url": step.url})
        return
    context = ctx.context(None, "")
    insert_ignore(ctx.conn, webhooks, [{
        "key": f"{ctx.enrollment.id}:{index}", "account_id": ctx.account["id"], "playbook_id": ctx.playbook.id,
        "url": url, "body": _render_body(ctx, step.body, context), "state": "queued", "attempts": 0,
        "not_before": ctx.now, "created_at": ctx.now}])
    ctx.log(audit.STEP_DONE, index, detail={"action": "webhook"})


def run_set(ctx: StepContext, index: int, step: SetStep) -> None:
    set_fields(ctx.conn, ctx.account["id"], dict(step.values), ctx.now)
    ctx.account.update(step.values)
    ctx.log(audit.STEP_DONE, index, detail={"action": "set", "values": dict(step.values)})


def _exit_reason(ctx: StepContext) -> str | None:
    cond = ctx.playbook.exit_when
    if cond is None or not evaluation.evaluate(cond, ctx.account, ctx.now, ctx.runtime.config.tz):
        return None
    return "exit_when matched"


def _end(conn: Connection, enrollment: Row[Any], state: str, step: int, reason: str | None, now: datetime) -> None:
    conn.execute(update(enrollments).where(enrollments.c.id == enrollment.id).values(
        state=state, step=step, next_due_at=None, finished_at=now, reason=reason, active_key=None))
    audit.record(conn, audit.EXITED if state == "exited" else audit.COMPLETED, account_id=enrollment.account_id,
                 playbook_id=enrollment.playbook_id, enrollment_id=enrollment.id, reason=reason, at=now)


def _finish(ctx: StepContext, state: str, step: int, reason: str | None) -> None:
    _end(ctx.conn, ctx.enrollment, state, step, reason, ctx.now)


def _check_goal(ctx: StepContext) -> None:
    goal = ctx.playbook.goal
    if goal is None or ctx.enrollment.goal_met_at is not None:
        return
    entered = aware(ctx.enrollment.entered_at)
    assert entered is not None
    if goal.within is not None and ctx.now > entered + timedelta(seconds=goal.within):
        return
    if evaluation.evaluate(goal.when, ctx.account, ctx.now, ctx.runtime.config.tz):
        ctx.conn.execute(update(enrollments).where(enrollments.c.id == ctx.enrollment.id)
                         .values(goal_met_at=ctx.now))
        ctx.log(audit.GOAL_MET, None)


def _run_step(ctx: StepContext, index: int, step: Step) -> datetime | None:
    """Run one step; returns when the enrollment is next due if the step is a wait."""
    if isinstance(step, WaitStep):
        return ctx.now + timedelta(seconds=step.seconds)
    runner: Any = {EmailStep: run_email, TaskStep: run_task, WebhookStep: run_webhook, SetStep: run_set}[type(step)]
    try:
        # A savepoint: a step that fails on this account's data leaves nothing half-written, is
        # recorded, and does not hold up the rest of the cadence or other accounts.
        with ctx.conn.begin_nested():
            runner(ctx, index, step)
    except UserError as exc:
        ctx.log(audit.STEP_SKIPPED, index, "step_error", detail={"error": str(exc)})
    return None


def advance_one(ctx: StepContext) -> None:
    """Run steps from the enrollment's position until a wait, the end, or an exit."""
    index = ctx.enrollment.step
    _check_goal(ctx)
    while index < len(ctx.playbook.steps):
        reason = _exit_reason(ctx)
        if reason:
            return _finish(ctx, "exited", index, reason)
        due = _run_step(ctx, index, ctx.playbook.steps[index])
        index += 1
        if due is not None:
            ctx.conn.execute(update(enrollments).where(enrollments.c.id == ctx.enrollment.id)
                             .values(step=index, next_due_at=due))
            return None
    return _finish(ctx, "completed", index, None)


def _claim(conn: Connection, enrollment_id: int, now: datetime) -> Row[Any] | None:
    """Re-read a due enrollment inside this transaction; on PostgreSQL lock it, skipping if taken."""
    query = select(enrollments).where(enrollments.c.id == enrollment_id, enrollments.c.state == "active",
                                      enrollments.c.next_due_at <= now)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).first()


def _advance_id(runtime: Runtime, engine: Engine, enrollment_id: int, now: datetime,
                types: dict[str, str]) -> None:
    with engine.begin() as conn:
        row = _claim(conn, enrollment_id, now)
        if row is None:
            return
        playbook = runtime.playbook(row.playbook_id)
        if playbook is None or not playbook.enabled:
            return _end(conn, row, "exited", row.step, "playbook removed or disabled", now)
        account = get_account(conn, row.account_id, types)
        if account is None:
            return _end(conn, row, "exited", row.step, "account no longer in the store", now)
        secret = resolve_secret(conn, runtime.config.delivery.unsubscribe_secret)
        advance_one(StepContext(runtime, conn, row, playbook, account, now, secret, _event(conn, row.event_id)))
    return None


def _event(conn: Connection, event_id: int | None) -> dict[str, Any] | None:
    if event_id is None:
        return None
    query = select(events.c.name, events.c.data, events.c.occurred_at).where(events.c.id == event_id)
    row = conn.execute(query).first()
    return None if row is None else {**(row.data or {}), "name": row.name, "occurred_at": aware(row.occurred_at)}


def advance(runtime: Runtime, engine: Engine, now: datetime, batch: int = 500) -> int:
    """Advance every enrollment due at `now`; returns how many were advanced."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    done = 0
    last = 0
    while True:
        with engine.connect() as conn:
            ids = list(conn.execute(select(enrollments.c.id).where(
                enrollments.c.state == "active", enrollments.c.next_due_at <= now, enrollments.c.id > last)
                .order_by(enrollments.c.id).limit(batch)).scalars())
        if not ids:
            return done
        for enrollment_id in ids:
            _advance_id(runtime, engine, enrollment_id, now, types)
        done += len(ids)
        last = ids[-1]
