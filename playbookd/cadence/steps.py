"""The steps of a cadence: email into the outbox, task, webhook, set; each audited with its reason.

Email steps render into the outbox (unique key per enrollment, step identity and contact, so a retry
or a step an edit moved never queues twice); tasks (one open per playbook, account and step: see
cadence.tasks), webhooks and field updates are stored.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from playbookd.cadence.context import StepContext, csm
from playbookd.cadence.task_events import WAIT_ENDED, task_closed
from playbookd.cadence.tasks import NewTask, open_task
from playbookd.config.durations import shift
from playbookd.config.settings import expand_env
from playbookd.delivery.clicks import Rewriter
from playbookd.delivery.message import make_message_id
from playbookd.delivery.recipients import Contact, Filter, eligible, load_contacts
from playbookd.delivery.unsubscribe import sign, unsubscribe_url
from playbookd.errors import PlaybookdError, UserError
from playbookd.model import fields as F
from playbookd.model import senders
from playbookd.model.account import encode
from playbookd.model.addresses import canonical_or_none
from playbookd.model.headers import header_value
from playbookd.model.steps import (
    EmailStep,
    SetStep,
    Step,
    TaskStep,
    Variant,
    WaitStep,
    WebhookStep,
    step_kind,
    variant_for,
)
from playbookd.store import audit
from playbookd.store.accounts import set_fields
from playbookd.store.database import insert_ignore
from playbookd.store.schema import outbox, webhooks
from playbookd.templates.compiled import Rendered
from playbookd.workers import Interrupted

log = logging.getLogger("playbookd.cadence")


def _headers(ctx: StepContext, step: int, variant: Variant) -> tuple[dict[str, str], list[str]]:
    """Our own headers, each one line and capped like the subject; and the names of those cut."""
    given = {"X-Playbook": ctx.playbook.id, "X-Account": ctx.account["id"],
             "X-Playbook-Step": str(step), **({"X-Variant": variant.name} if variant.name else {})}
    headers, cut = {}, []
    for name, value in given.items():
        headers[name], was_cut = header_value(value, ctx.runtime.config.limits.header_chars)
        cut += [name] if was_cut else []
    return headers, cut


def _record_cuts(ctx: StepContext, index: int, contact: Contact, cut: list[str]) -> None:
    """A value cut to fit a header is the data's problem, not the email's: the email goes, and
    `history`, `status` and the log say what was cut."""
    limit = ctx.runtime.config.limits.header_chars
    ctx.log(audit.HEADER_CUT, index, "limits.header_chars", contact=contact.email,
            detail={"headers": cut, "limit": limit})
    log.warning("%s of the email to %s cut at limits.header_chars (%d characters)", ", ".join(cut),
                contact.email, limit, extra={"account": ctx.account["id"], "playbook": ctx.playbook.id})


def email_context(ctx: StepContext, contact: Contact) -> tuple[str, dict[str, Any]]:
    """The unsubscribe URL and the template context of the email to `contact`."""
    token = sign(ctx.secret, contact.email, ctx.playbook.category)
    url = unsubscribe_url(ctx.runtime.config.company.public_url, token)
    return url, ctx.context(contact.context(), url)


def _rendered(ctx: StepContext, index: int, contact: Contact, template: str) -> tuple[str, Rendered]:
    """The unsubscribe URL and the email: rendered ahead for this very step and account, else now."""
    ahead = ctx.batch.take(ctx.enrollment.id, index, contact.id, ctx.account) if ctx.batch is not None else None
    if ahead is not None:
        return ahead
    url, context = email_context(ctx, contact)
    return url, ctx.runtime.templates.render(template, ctx.account["segment"], context)


@lru_cache(maxsize=8)
def _domain(from_: str) -> str:
    """The Message-ID's domain: parsing the From address was a tenth of queueing an email."""
    return parseaddr(from_)[1].rpartition("@")[2] or "playbookd.local"


def _email_row(ctx: StepContext, index: int, step: EmailStep, contact: Contact, variant: Variant) -> dict[str, Any]:
    """The outbox row of the email to `contact`, rendered; written by the caller."""
    url, rendered = _rendered(ctx, index, contact, variant.template)
    sender = _sender(ctx, step.sender or rendered.sender)
    headers, cut = _headers(ctx, index, variant)
    cut += ["From"] if sender.cut else []
    if rendered.cut or cut:
        _record_cuts(ctx, index, contact, [*rendered.cut, *cut])
    key = f"{ctx.enrollment.id}:{ctx.playbook.step_token(index)}:{contact.id}"
    html, text = rendered.html, rendered.text
    if ctx.runtime.config.delivery.track_clicks:
        public = ctx.runtime.config.company.public_url
        own = public.rstrip("/")
        links = Rewriter(ctx.secret, public, key, keep=(url, f"{own}/unsubscribe/", f"{own}/c/"))
        html, text = links.html(html), links.text(text)
    domain = _domain(ctx.runtime.config.delivery.from_)
    row = {
        "key": key, "message_id": make_message_id(key, domain, ctx.secret), "enrollment_id": ctx.enrollment.id,
        "playbook_id": ctx.playbook.id, "account_id": ctx.account["id"], "contact_id": contact.id,
        "to_addr": contact.email, "template": rendered.template, "variant": variant.name or None,
        "category": ctx.playbook.category, "priority": ctx.playbook.priority, "subject": rendered.subject,
        "html": html, "text": text, "headers": {**headers, **sender.headers(), "List-Unsubscribe-URL": url},
        "state": "queued", "attempts": 0, "not_before": ctx.now, "created_at": ctx.now,
    }
    ctx.log(audit.QUEUED, index, contact=contact.email, detail={"template": rendered.template,
                                                                 "variant": variant.name or None, **sender.detail()})
    return row


def _sender(ctx: StepContext, spec: str | None) -> senders.Sender:
    delivery = ctx.runtime.config.delivery
    return senders.resolve(spec, ctx.account, csm(ctx.account, ctx.runtime.config.company.name)["name"],
                           delivery.from_, delivery.reply_to, delivery.sending_domains,
                           ctx.runtime.config.limits.header_chars)


def _people(ctx: StepContext) -> list[Contact]:
    account_id = ctx.account["id"]
    if ctx.batch is not None and account_id in ctx.batch.contacts:
        return ctx.batch.contacts[account_id]
    return load_contacts(ctx.conn, [account_id])[account_id]


def run_email(ctx: StepContext, index: int, step: EmailStep) -> None:
    people = _people(ctx)
    only = Filter(step.only, ctx.now, ctx.runtime.config.tz) if step.only is not None else None
    known = ctx.batch.suppressions if ctx.batch is not None else None
    ok, skipped = eligible(ctx.conn, people, step.to, ctx.playbook.category, only, known)
    for contact, reason in skipped:
        ctx.log(audit.STEP_SKIPPED, index, reason, contact=contact.email)
    if not ok:
        ctx.log(audit.STEP_SKIPPED, index, "no_recipient", detail={"to": list(step.to)})
        return
    variant = variant_for(ctx.playbook, index, step, ctx.enrollment.group_name, ctx.account["id"])
    # every email rendered before any is written: one that fails leaves nothing of the step behind
    rows = [_email_row(ctx, index, step, contact, variant) for contact in ok]
    if ctx.batch is not None:
        ctx.batch.queued += rows  # written with the batch's others (cadence.batch.write)
    else:
        insert_ignore(ctx.conn, outbox, rows)
    ctx.log(audit.STEP_DONE, index, detail={"action": "email", "recipients": len(ok)})


def _assignee(ctx: StepContext, step: TaskStep) -> str | None:
    """The account's CSM, else the segment's fallback in config.yaml (`tasks.fallback_assignee`)."""
    chosen = (ctx.account.get("csm_email") or None) if step.assign == "csm" else step.assign
    if chosen is None:
        return ctx.runtime.config.tasks.fallback(ctx.account.get("segment"))
    return canonical_or_none(str(chosen)) or str(chosen)


def run_task(ctx: StepContext, index: int, step: TaskStep) -> None:
    title = ctx.runtime.templates.render_string(step.title, ctx.inline_context())
    assignee = _assignee(ctx, step)
    due = shift(ctx.now, step.due_in, ctx.runtime.config.tz) if step.due_in else None
    new = NewTask(ctx.playbook.id, ctx.account["id"], ctx.enrollment.id, index, ctx.playbook.key_at(index) or
                  str(index), title, assignee, due)
    task_id, outcome = open_task(ctx.conn, new, ctx.now, ctx.runtime.config.tasks)
    ctx.log(audit.STEP_DONE, index, detail={"action": "task", "title": title, "assignee": assignee,
                                            "task": task_id, "outcome": outcome})


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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"webhook URL {step.url!r} expands to {url!r}, not an http(s) URL (is a variable unset?)")
    context = ctx.inline_context()
    insert_ignore(ctx.conn, webhooks, [{
        "key": f"{ctx.enrollment.id}:{ctx.playbook.step_token(index)}", "account_id": ctx.account["id"],
        "playbook_id": ctx.playbook.id, "enrollment_id": ctx.enrollment.id, "url": url,
        "body": _render_body(ctx, step.body, context),
        "state": "queued", "attempts": 0, "not_before": ctx.now, "created_at": ctx.now}])
    ctx.log(audit.STEP_DONE, index, detail={"action": "webhook"})


def _set_value(ctx: StepContext, value: Any) -> Any:
    """A text value is a template (`{{ now }}`, `{{ account.arr * 1.1 }}`), typed once rendered."""
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    return F.infer(ctx.runtime.templates.render_string(value, ctx.inline_context()))[1]


def run_set(ctx: StepContext, index: int, step: SetStep) -> None:
    values = {name: _set_value(ctx, value) for name, value in step.values.items()}
    health = set_fields(ctx.conn, ctx.account["id"], values, ctx.now, ctx.runtime.health)
    ctx.account.update(values)
    ctx.account.update(health)  # the steps after this one see the score the new values give
    ctx.log(audit.STEP_DONE, index, detail={"action": "set", "values": {k: encode(v) for k, v in values.items()}})


class StepFailed(PlaybookdError):
    """A step could not run on this account (a template error, a webhook URL that is not one):
    its enrollment stops in `failed` with this text until an operator retries it."""


def _wait(ctx: StepContext, index: int, step: WaitStep) -> datetime | None:
    """When the wait ends; None (go on now) for a task wait whose task is closed already."""
    if step.until_task_done and (task := task_closed(ctx.conn, ctx.enrollment.id, ctx.playbook.awaited_task(index))):
        ctx.log(WAIT_ENDED, index, "task_closed", detail={"task": task})
        return None
    return shift(ctx.now, step.span, ctx.runtime.config.tz)


def _contained(ctx: StepContext, step: Step) -> AbstractContextManager[Any]:
    """What keeps a step that fails on this account's data from leaving anything half-written (and
    from holding up other accounts): a savepoint, except for an email step in a batch whose audit
    entries are held. That one writes nothing itself (its outbox rows wait in the batch, added only
    once every email of the step rendered), so dropping its held entries takes all of it back, and
    two statements per email (SAVEPOINT, RELEASE) are saved."""
    if isinstance(step, EmailStep) and ctx.batch is not None and audit.holding(ctx.conn):
        return nullcontext()
    return ctx.conn.begin_nested()


def run_step(ctx: StepContext, index: int, step: Step) -> datetime | None:
    """Run one step; returns when the enrollment is next due if the step is a wait."""
    if isinstance(step, WaitStep):
        return _wait(ctx, index, step)
    runner: Any = {EmailStep: run_email, TaskStep: run_task, WebhookStep: run_webhook, SetStep: run_set}[type(step)]
    held = audit.held_count(ctx.conn)
    try:
        with _contained(ctx, step):
            runner(ctx, index, step)
    except (SQLAlchemyError, Interrupted):
        raise  # the store's problem or a stop, not this account's: the whole transaction is retried later
    except Exception as exc:
        audit.drop_held(ctx.conn, held)  # what the step recorded is taken back with what it wrote
        raise StepFailed(f"{step_kind(step)} step {index + 1}: {exc}") from exc
    return None
