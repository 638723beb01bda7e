"""explain: why an account is, is not, or would be in each playbook, leaf by leaf."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from playbookd.engine import calendar, launch
from playbookd.engine.enroll import _history, entry_block
from playbookd.engine.health import breakdown_lines
from playbookd.errors import UserError
from playbookd.model import evaluation
from playbookd.model.account import CHANGES, INTERNAL, AccountRecord, encode
from playbookd.model.cron import occurrences
from playbookd.model.health import compute
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import aware
from playbookd.store.launch import statuses
from playbookd.store.people import attach_contacts
from playbookd.store.schema import enrollments

AHEAD_DAYS = 14


def _enrollment(engine: Engine, playbook_id: str, account_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(enrollments).where(
            enrollments.c.playbook_id == playbook_id, enrollments.c.account_id == account_id)
            .order_by(enrollments.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    due = aware(row.next_due_at)
    finished = aware(row.finished_at)
    return {"state": row.state, "step": row.step, "next_due_at": due.isoformat() if due else None,
            "entered_at": encode(aware(row.entered_at)), "finished_at": finished.isoformat() if finished else None,
            "reason": row.reason}


def _next_occurrence(playbook: Playbook, at: datetime, tz: ZoneInfo) -> str:
    assert playbook.schedule is not None
    found = occurrences(playbook.schedule.cron, tz, at, at + timedelta(days=400), limit=1)
    return found[0].isoformat() if found else "none within a year"


def _verdict(playbook: Playbook, record: AccountRecord, audience_ok: bool, trigger_ok: bool,
             block: str | None, at: datetime, tz: ZoneInfo) -> str:
    if playbook.event is not None:
        return f"enters when a '{playbook.event}' event arrives and its condition holds"
    if not audience_ok:
        return f"not in the audience: segment {record.get('segment')!r} not in {list(playbook.segments or [])}"
    if playbook.schedule is not None:
        upcoming = _next_occurrence(playbook, at, tz)
        if block and "still enrolled" in block:
            return f"skipped at its occurrences while still enrolled; next occurrence {upcoming}"
        state = "holds" if trigger_ok else "is false"
        return f"enters at the next occurrence of its schedule, {upcoming}, if its condition holds then " \
               f"(now it {state})"
    if not trigger_ok:
        return "does not enter: the trigger is false"
    if block:
        return f"does not enter: {block}"
    return "would enter now"


def _launch_verdict(conn: Connection, runtime: Runtime, playbook: Playbook, status: str, account_id: str,
                    at: datetime, verdict: str) -> str:
    """The verdict as if the playbook were live (a draft is explained so, to be checked before launch),
    and what its status or ramp does to it."""
    if status == "retired":
        return "not evaluated: the playbook is retired"
    if status == "draft":
        return f"draft, enters nothing until 'status: live'; if live: {verdict}"
    if status == "paused":
        return f"paused, takes no new entrants until resumed; if live: {verdict}"
    ramp = launch.ramp(conn, playbook.id, playbook.launch, at, runtime.config.tz)
    if ramp is None or verdict != "would enter now":
        return verdict
    since = launch.waiting_since(conn, playbook.id, [account_id]).get(account_id)
    queued = f"waiting to enter since {since.isoformat()}" if since else "would join the waiting list"
    return (f"{queued} (launch.max_new_per_day {ramp.per_day}: {ramp.entered_today} entered today, "
            f"{ramp.waiting} waiting)")


def explain_playbook(runtime: Runtime, engine: Engine, playbook: Playbook, record: AccountRecord,
                     at: datetime) -> dict[str, Any]:
    tz = runtime.config.tz
    audience_ok = playbook.segments is None or record.get("segment") in playbook.segments
    tree = evaluation.explain(playbook.trigger, record, at, tz)
    with engine.connect() as conn:
        seen = _history(conn, {(playbook.id, record["id"])}).get((playbook.id, record["id"]))
        status = statuses(runtime.playbooks, conn)[playbook.id]
        verdict = _launch_verdict(conn, runtime, playbook, status, record["id"], at,
                                  _verdict(playbook, record, audience_ok, tree.result,
                                           entry_block(playbook, seen, at, tz), at, tz))
    out: dict[str, Any] = {
        "playbook": playbook.id, "name": playbook.name, "status": status, "verdict": verdict,
        "audience": {"segments": list(playbook.segments) if playbook.segments else None, "ok": audience_ok},
        "trigger": tree.to_dict(), "enrollment": _enrollment(engine, playbook.id, record["id"]),
    }
    if playbook.exit_when is not None:
        out["exit_when"] = evaluation.explain(playbook.exit_when, record, at, tz).to_dict()
    out["_tree"] = tree
    return out


def explain(runtime: Runtime, engine: Engine, account_id: str, at: datetime,
            playbook_id: str | None = None) -> dict[str, Any]:
    with engine.connect() as conn:
        record = get_account(conn, account_id, load_account_types(conn), runtime.history_from(at))
        if record is not None:
            attach_contacts(conn, [record])
        recent = [e for e in audit.history(conn, account_id=account_id, playbook_id=playbook_id, limit=50)]
    if record is None:
        raise UserError(f"account {account_id!r} is not in the store (run `playbookd sync` first?)")
    playbooks = list(runtime.playbooks)
    if playbook_id is not None:
        playbooks = [p for p in playbooks if p.id == playbook_id]
        if not playbooks:
            raise UserError(f"no playbook {playbook_id!r}; known: {', '.join(p.id for p in runtime.playbooks)}")
    fields = {k: encode(v) for k, v in record.items() if k not in INTERNAL}
    health = None if runtime.health is None else compute(runtime.health, record, at)
    return {"account": account_id, "at": at.isoformat(), "segment": record.get("segment"), "fields": fields,
            "changes": {k: encode(v) for k, v in record[CHANGES].items()},
            "health": None if health is None else health.as_json(account_id, record.get("segment")),
            "_health": health,
            "playbooks": [explain_playbook(runtime, engine, p, record, at) for p in playbooks],
            "upcoming": [u.as_dict() for u in calendar.upcoming(runtime, engine, at, AHEAD_DAYS, account_id)
                         if playbook_id is None or u.playbook == playbook_id],
            "history": [e.line() for e in recent]}


def render_text(report: dict[str, Any]) -> list[str]:
    lines = [f"Account {report['account']} (segment {report['segment']}) at {report['at']}"]
    if report.get("_health") is not None:
        lines += breakdown_lines(report["_health"])
    for p in report["playbooks"]:
        lines += ["", f"{p['playbook']}: {p['verdict']}"]
        if p["enrollment"]:
            e = p["enrollment"]
            lines.append(f"  enrollment: {e['state']}, next step {e['step']}, due {e['next_due_at']}"
                         + (f", {e['reason']}" if e["reason"] else ""))
        lines.append("  trigger:")
        lines += ["    " + line for line in p["_tree"].lines()]
    if report["upcoming"]:
        lines += ["", f"Coming up in the next {AHEAD_DAYS} days (as the data stands; quiet hours applied):"]
        lines += [f"  {u['at'][:16]}  {u['playbook']} step {u['step']}: {u['action']} "
                  f"{u['template'] or u['detail'] or ''}" + (f" to {u['to']}" if u["to"] else "")
                  for u in report["upcoming"]]
    if report["history"]:
        lines += ["", "Decisions recorded for this account:"] + ["  " + h for h in report["history"]]
    return lines
