"""What the Accounts pages show: search by id or name, and one account's fields, health and its trend,
enrollments with their position and next step, the explain tree per playbook, the emails it was sent
and its timeline. Every query here reads one account through an index (see migration 0009)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from playbookd.console.charts import Chart, trend
from playbookd.console.playbook_data import step_summary
from playbookd.console.tables import Link, Table, href, offset, paged
from playbookd.engine.calendar import upcoming
from playbookd.engine.explain import explain
from playbookd.runtime import Runtime
from playbookd.store.database import aware
from playbookd.store.schema import accounts, audit, enrollments, health_history, outbox, tasks

TREND_DAYS = 90
NAME = accounts.c.data["name"].as_string()


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(engine: Engine, text: str, page: int, size: int) -> Table:
    """An id that exists comes first; then ids starting with the text (a range on the primary key) or
    names containing it, in id order, a page at a time. A name is inside the account's JSON, so a
    name search reads accounts in id order until a page is filled."""
    table = Table("accounts", ("account", "name", "segment", "synced"), page=page, empty="No account matches.")
    query = select(accounts.c.id, NAME, accounts.c.segment, accounts.c.synced_at).order_by(accounts.c.id)
    text = text.strip()
    if text:
        prefix = accounts.c.id.between(text, text + "\U0010ffff")
        query = query.where(or_(prefix, func.lower(NAME).like(_like(text.lower()), escape="\\")))
    with engine.connect() as conn:
        rows = list(conn.execute(query.offset(offset(page, size)).limit(size + 1)))
    shown, table.has_next = paged(rows, page, size)
    table.rows = [(Link(r.id, href("accounts", r.id)), r[1], r.segment, aware(r.synced_at)) for r in shown]
    return table


COMING_DAYS = 14


@dataclass
class AccountPage:
    id: str
    segment: str | None
    name: Any
    fields: Table
    health: dict[str, Any] | None
    trend: Chart
    enrollments: Table
    explained: list[dict[str, Any]]
    emails: Table
    tasks: Table
    timeline: Table
    coming: Table


def _fields(report: dict[str, Any]) -> Table:
    table = Table("fields", ("field", "value", "changed from"))
    changes = report["changes"]
    for name in sorted(report["fields"]):
        change = changes.get(name)
        table.rows.append((name, report["fields"][name], "" if change is None else change.get("from")))
    return table


def _trend(engine: Engine, account_id: str, today: date) -> Chart:
    since = today - timedelta(days=TREND_DAYS)
    query = (select(health_history.c.day, health_history.c.score)
             .where(health_history.c.account_id == account_id, health_history.c.day >= since)
             .order_by(health_history.c.day))
    with engine.connect() as conn:
        points = [(d.isoformat(), float(s)) for d, s in conn.execute(query) if s is not None]
    return trend("Health score (days it moved)", points)


def _enrollments(rt: Runtime, engine: Engine, account_id: str) -> Table:
    table = Table("enrollments", ("playbook", "state", "group", "entered", "position", "next step", "due",
                                  "reason"))
    query = select(enrollments).where(enrollments.c.account_id == account_id).order_by(enrollments.c.id.desc())
    with engine.connect() as conn:
        rows = list(conn.execute(query.limit(200)))
    for row in rows:
        playbook = rt.playbook(row.playbook_id)
        position, upcoming = "-", "-"
        if playbook is not None:
            at, _ = playbook.position(row.step, row.step_key)
            total = len(playbook.steps)
            position = f"step {min(at + 1, total)} of {total}" if at < total else f"done ({total} steps)"
            if row.state in ("active", "failed") and at < total:
                upcoming = step_summary(playbook.steps[at])
        due = aware(row.next_due_at) if row.state == "active" else None
        table.rows.append((Link(row.playbook_id, href("playbooks", row.playbook_id)), row.state, row.group_name,
                           aware(row.entered_at), position, upcoming, due, row.reason))
    return table


def _emails(engine: Engine, account_id: str, page: int, size: int) -> Table:
    table = Table("emails", ("id", "subject", "to", "template", "playbook", "state", "queued", "sent", "error"),
                  page=page, empty="No email for this account yet.")
    query = (select(outbox.c.id, outbox.c.subject, outbox.c.to_addr, outbox.c.template, outbox.c.playbook_id,
                    outbox.c.state, outbox.c.created_at, outbox.c.sent_at, outbox.c.last_error)
             .where(outbox.c.account_id == account_id).order_by(outbox.c.id.desc()))
    with engine.connect() as conn:
        rows = list(conn.execute(query.offset(offset(page, size)).limit(size + 1)))
    shown, table.has_next = paged(rows, page, size)
    table.rows = [(r.id, r.subject, r.to_addr, r.template, r.playbook_id, r.state, aware(r.created_at),
                   aware(r.sent_at), r.last_error) for r in shown]
    return table


def _coming(rt: Runtime, engine: Engine, account_id: str, now: datetime) -> Table:
    """What the account gets in the next two weeks across every playbook, as `playbookd calendar` says."""
    table = Table("coming", ("when", "playbook", "step", "action", "template", "to", "detail", "why"),
                  empty="Nothing is due in the next 14 days.")
    table.rows = [(u.at, Link(u.playbook, href("playbooks", u.playbook)), u.step + 1, u.action, u.template, u.to,
                   u.detail, u.why) for u in upcoming(rt, engine, now, COMING_DAYS, account_id)]
    return table


def _tasks(engine: Engine, account_id: str) -> Table:
    table = Table("account-tasks", ("id", "title", "assignee", "due", "state", "playbook"),
                  empty="No task for this account.")
    query = select(tasks).where(tasks.c.account_id == account_id).order_by(tasks.c.id.desc()).limit(200)
    with engine.connect() as conn:
        table.rows = [(r.id, r.title, r.assignee, aware(r.due_at), r.state, r.playbook_id)
                      for r in conn.execute(query)]
    return table


def _detail(value: Any) -> str:
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    return ", ".join(f"{k}={v}" for k, v in value.items())


def _timeline(engine: Engine, account_id: str, page: int, size: int) -> Table:
    """Every decision: entered, each email, task, skip and exit with its reason (the audit log)."""
    table = Table("timeline", ("at", "event", "playbook", "step", "contact", "reason", "detail"), page=page)
    query = (select(audit).where(audit.c.account_id == account_id)
             .order_by(audit.c.at.desc(), audit.c.id.desc()))
    with engine.connect() as conn:
        rows = list(conn.execute(query.offset(offset(page, size)).limit(size + 1)))
    shown, table.has_next = paged(rows, page, size)
    table.rows = [(aware(r.at), r.event, r.playbook_id, None if r.step is None else r.step + 1, r.contact,
                   r.reason, _detail(r.detail)) for r in shown]
    return table


def page(rt: Runtime, engine: Engine, account_id: str, now: datetime, pages: dict[str, int],
         size: int) -> AccountPage:
    """`pages`: the page asked for of each paged table (emails, timeline). Raises UserError for an
    account that is not in the store."""
    report = explain(rt, engine, account_id, now)
    return AccountPage(
        account_id, report["segment"], report["fields"].get("name"), _fields(report), report["health"],
        _trend(engine, account_id, now.astimezone(rt.config.tz).date()), _enrollments(rt, engine, account_id),
        report["playbooks"], _emails(engine, account_id, pages.get("emails", 1), size),
        _tasks(engine, account_id), _timeline(engine, account_id, pages.get("timeline", 1), size),
        _coming(rt, engine, account_id, now))
