"""calendar: what each account will get, and when, across every playbook; changes nothing.

Projected from the data as it stands, from three sources:
- enrollments in progress: their remaining steps from when the next one is due, waits added up;
- state-triggered playbooks: the accounts that would enter now (what `simulate` shows), and
  calendar occurrences due now that have not run;
- calendar playbooks: each occurrence of their schedule in the window, for the accounts whose
  condition holds at that moment, unless their enrollment from before would still be running.
An email's time is when it goes out: quiet hours in each recipient's own time zone applied.
Exits, goals, the frequency cap, events and data that changes meanwhile are not foreseen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from playbookd.config.durations import format_duration, shift
from playbookd.delivery.holds import next_allowed
from playbookd.delivery.recipients import Contact, Filter, eligible, load_contacts
from playbookd.engine.enroll import candidates, entry_condition, live
from playbookd.errors import UserError
from playbookd.model import evaluation
from playbookd.model.cron import occurrences
from playbookd.model.steps import (
    CONTROL,
    EmailStep,
    Playbook,
    SetStep,
    Step,
    TaskStep,
    WaitStep,
    WebhookStep,
    entry_group,
    variant_for,
)
from playbookd.model.steps import step_kind as kind_of
from playbookd.runtime import Runtime
from playbookd.store.accounts import iter_accounts, load_account_types, records_by_id
from playbookd.store.chunks import chunked
from playbookd.store.database import aware
from playbookd.store.launch import statuses
from playbookd.store.people import attach_contacts
from playbookd.store.schema import accounts, enrollments


@dataclass(frozen=True)
class Upcoming:
    at: datetime  # when it happens: for an email, when it goes out to `to`
    due_at: datetime  # when the step comes due
    account: str
    segment: str
    playbook: str
    step: int  # from 0, as simulate counts
    action: str
    template: str | None
    detail: str | None  # a task's title, a webhook's URL, the fields a `set` writes
    to: str | None
    why: str  # enrolled | enters now | occurrence <time>

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "account": self.account, "segment": self.segment,
                "playbook": self.playbook, "step": self.step, "action": self.action, "template": self.template,
                "detail": self.detail, "to": self.to, "due_at": self.due_at.isoformat(), "why": self.why}

    def row(self) -> tuple[str, ...]:
        return (self.at.strftime("%Y-%m-%d %H:%M"), self.account, self.playbook, str(self.step), self.action,
                self.template or self.detail or "", self.to or "-", self.why)


@dataclass(frozen=True)
class Plan:
    """An account going through a playbook from step `position`, that step due at `start`."""

    playbook: Playbook
    account: str
    segment: str
    position: int
    start: datetime
    why: str
    group: str  # the enrollment's group: `control` gets no steps (held back), a variant picks the email


def _timeline(runtime: Runtime, plan: Plan) -> Iterator[tuple[int, Step, datetime]]:
    """Each remaining step that is not a wait, with when it comes due."""
    moment = plan.start
    for index in range(plan.position, len(plan.playbook.steps)):
        step = plan.playbook.steps[index]
        if isinstance(step, WaitStep):
            moment = shift(moment, step.span, runtime.config.tz)
        else:
            yield index, step, moment


def _end(runtime: Runtime, plan: Plan) -> datetime:
    """When the enrollment would finish: its last step's time."""
    return max((moment for _, _, moment in _timeline(runtime, plan)), default=plan.start)


def _detail(step: Step) -> str | None:
    if isinstance(step, TaskStep):
        return step.title
    if isinstance(step, WebhookStep):
        return step.url
    if isinstance(step, SetStep):
        return ", ".join(f"{k}={v}" for k, v in step.values.items())
    return None


def _emails(runtime: Runtime, conn: Connection, plan: Plan, index: int, step: EmailStep, due: datetime,
            people: Sequence[Contact], why: str) -> Iterator[Upcoming]:
    variant = variant_for(plan.playbook, index, step, plan.group, plan.account)
    try:
        template: str | None = runtime.templates.resolve(variant.template, plan.segment)
    except UserError:
        template = None
    only = None if step.only is None else Filter(step.only, due, runtime.config.tz)
    ok, _ = eligible(conn, people, step.to, plan.playbook.category, only)
    quiet = runtime.config.delivery.quiet_hours
    base = (plan.account, plan.segment, plan.playbook.id, index, "email", template, None)
    if not ok:
        yield Upcoming(due, due, *base, None, why + "; no eligible recipient: skipped")
    for contact in ok:
        held = next_allowed(due, contact.timezone or runtime.config.timezone, quiet) if quiet else None
        yield Upcoming(held or due, due, *base, contact.email, why)


def _lines(runtime: Runtime, conn: Connection, plan: Plan, until: datetime,
           people: Sequence[Contact]) -> Iterator[Upcoming]:
    if plan.group == CONTROL:
        return  # held back: its waits run, but it gets no email, task, webhook or set
    for index, step, due in _timeline(runtime, plan):
        if due > until:
            return
        # a step's `when:` is decided when it comes due, from what the enrollment did by then
        why = plan.why + ("; if its when: holds then" if step.when is not None else "")
        if isinstance(step, EmailStep):
            yield from _emails(runtime, conn, plan, index, step, due, people, why)
        else:
            yield Upcoming(due, due, plan.account, plan.segment, plan.playbook.id, index, kind_of(step), None,
                           _detail(step), None, why)


def _enrolled(runtime: Runtime, conn: Connection, now: datetime, account: str | None) -> list[Plan]:
    query = (select(enrollments.c.playbook_id, enrollments.c.account_id, enrollments.c.step, enrollments.c.step_key,
                    enrollments.c.next_due_at, enrollments.c.group_name, accounts.c.segment)
             .join(accounts, accounts.c.id == enrollments.c.account_id)
             .where(enrollments.c.state == "active").order_by(enrollments.c.id))
    if account is not None:
        query = query.where(enrollments.c.account_id == account)
    plans = []
    status = statuses(runtime.playbooks, conn)
    for row in conn.execute(query):
        playbook, due = runtime.playbook(row.playbook_id), aware(row.next_due_at)
        if playbook is None or status[playbook.id] != "live" or due is None:
            continue  # a paused or draft playbook's enrollments wait, frozen, until it is live again
        position, _ = playbook.position(row.step, row.step_key)
        plans.append(Plan(playbook, row.account_id, row.segment, position, max(due, now), "enrolled",
                          row.group_name or ""))
    return plans


def _entering(runtime: Runtime, engine: Engine, now: datetime, account: str | None) -> list[Plan]:
    found = candidates(runtime, engine, now, workers=0 if account else None,
                       only=None if account is None else [account])
    return [Plan(c.playbook, c.account_id, c.segment, 0, now,
                 "occurrence now" if c.playbook.schedule else "enters now", entry_group(c.playbook, c.account_id))
            for c in found]


def _records(runtime: Runtime, engine: Engine, now: datetime, account: str | None) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        types = load_account_types(conn)
    since = runtime.history_from(now)  # later moments need less of the health history, never more
    found = records_by_id(engine, [account], types, since) if account else \
        iter_accounts(engine, types, history_since=since)
    for batch in chunked(found, 500):
        if runtime.needs_contacts:
            with engine.connect() as conn:
                attach_contacts(conn, batch)
        yield from batch


def _scheduled(runtime: Runtime, engine: Engine, now: datetime, until: datetime, account: str | None,
               busy: dict[tuple[str, str], datetime]) -> list[Plan]:
    """Each occurrence in (now, until] of the live calendar playbooks, for the accounts whose condition
    holds at that moment; the accounts are read once, whatever the number of occurrences."""
    tz = runtime.config.tz
    scheduled = []
    for playbook in live(runtime, engine, lambda p: p.schedule is not None and p.event is None):
        assert playbook.schedule is not None
        times = occurrences(playbook.schedule.cron, tz, now, until, limit=1000)
        if times:
            scheduled.append((playbook, entry_condition(playbook, runtime.exit_when), times))
    plans: list[Plan] = []
    if not scheduled:
        return plans
    for record in _records(runtime, engine, now, account):
        for playbook, cond, times in scheduled:
            key = (playbook.id, record["id"])
            for moment in times:
                if key in busy and busy[key] >= moment:
                    continue  # still enrolled from before: skipped at this occurrence
                if evaluation.evaluate(cond, record, moment, tz):
                    plan = Plan(playbook, record["id"], record["segment"], 0, moment,
                                f"occurrence {moment.isoformat()}", entry_group(playbook, record["id"]))
                    busy[key] = _end(runtime, plan)
                    plans.append(plan)
    return plans


def upcoming(runtime: Runtime, engine: Engine, now: datetime, days: int = 14,
             account: str | None = None) -> list[Upcoming]:
    """Every step due from `now` to `days` later, sorted by when it happens, then account."""
    if days < 0:
        raise UserError("--days must be 0 or more")
    until = now + timedelta(days=days)
    with engine.connect() as conn:
        if account is not None and conn.execute(select(accounts.c.id).where(accounts.c.id == account)).first() is None:
            raise UserError(f"account {account!r} is not in the store (run `playbookd sync` first?)")
        plans = _enrolled(runtime, conn, now, account)
    plans += _entering(runtime, engine, now, account)
    busy = {(p.playbook.id, p.account): _end(runtime, p) for p in plans}
    plans += _scheduled(runtime, engine, now, until, account, busy)
    found: list[Upcoming] = []
    for chunk in chunked(plans, 500):
        with engine.connect() as conn:
            people = load_contacts(conn, {p.account for p in chunk})
            for plan in chunk:
                found += _lines(runtime, conn, plan, until, people.get(plan.account, []))
    return sorted(found, key=lambda u: (u.at, u.account, u.playbook, u.step, u.to or ""))


def as_json(item: Upcoming) -> str:
    return json.dumps(item.as_dict())


def summary(items: Sequence[Upcoming], now: datetime, days: int) -> str:
    accounts_ = len({i.account for i in items})
    emails = sum(1 for i in items if i.action == "email" and i.to)
    return (f"{len(items)} step(s) for {accounts_} account(s), {emails} email(s), from {now.isoformat()} "
            f"for {format_duration(timedelta(days=days), largest='d')}")
