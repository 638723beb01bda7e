"""Launch controls on the command line: `simulate --summary`, playbook statuses, `playbooks pause|resume`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from playbookd.cli.output import table
from playbookd.config.settings import Config
from playbookd.engine import launch, statuses, summary
from playbookd.model.launch import HOLDING, declared
from playbookd.runtime import Runtime
from playbookd.store.database import connect
from playbookd.store.schema import enrollments, outbox


def echo_summary(rt: Runtime, engine: Engine, at: datetime, fmt: str, only: Sequence[str]) -> None:
    found = summary.summarize(rt, engine, at, only)
    if fmt == "json":
        for item in found:
            click.echo(json.dumps(item.as_dict()))
    else:
        rows = [(s.playbook.id, s.status, g.segment, f"{g.action} {g.what}", g.accounts, g.entering, g.emails)
                for s in found for g in s.groups.values()]
        rows += [(s.playbook.id, s.status, "(all)", "", s.accounts, s.entering, s.emails) for s in found]
        table(("PLAYBOOK", "STATUS", "SEGMENT", "FIRST ACTION", "ACCOUNTS", "ENTER NOW", "FIRST-CYCLE EMAILS"),
              sorted(rows, key=lambda r: (r[0], r[2] == "(all)", r[2], r[3])))
        click.echo(f"\nat {at.isoformat()}; accounts past a ramp's number for the day enter on later days")
    for warning in summary.warnings(found):
        click.echo(f"warning: {warning}", err=True)


def playbooks_data(config: Config, engine: Engine, at: datetime) -> list[dict[str, Any]]:
    """Each playbook's status as it acts now and where that comes from, its ramp, and what it holds."""
    files = {d.id: d for d in declared(Path(config.playbooks))}
    out = []
    with engine.connect() as conn:
        for item in statuses.shown(engine, list(files.values())):
            ramp = launch.ramp(conn, item.id, files[item.id].launch, at, config.tz)
            holds = item.status in HOLDING
            held = _count(conn, outbox, outbox.c.playbook_id == item.id, outbox.c.state == "queued") if holds else 0
            waiting = _count(conn, enrollments, enrollments.c.playbook_id == item.id,
                             enrollments.c.state == "active") if holds else 0
            out.append({"playbook": item.id, "status": item.status, "file_status": item.file_status,
                        "set_by": item.origin(), "held_since": item.held_since, "held_messages": held,
                        "held_enrollments": waiting,
                        "max_new_per_day": ramp.per_day if ramp else None,
                        "entered_today": ramp.entered_today if ramp else None,
                        "waiting": ramp.waiting if ramp else None})
    return out


def _count(conn: Connection, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def echo_playbooks(data: list[dict[str, Any]]) -> None:
    def ramp(p: dict[str, Any]) -> str:
        return "-" if p["max_new_per_day"] is None else \
            f"{p['entered_today']}/{p['max_new_per_day']} today, {p['waiting']} waiting"

    def held(p: dict[str, Any]) -> str:
        if p["held_since"] is None or not (p["held_messages"] or p["held_enrollments"]):
            return "-"
        return (f"since {p['held_since']:%Y-%m-%d %H:%M}: {p['held_enrollments']} enrollment(s), "
                f"{p['held_messages']} message(s)")

    table(("PLAYBOOK", "STATUS", "SET BY", "RAMP", "HOLDING"),
          [(p["playbook"], p["status"], p["set_by"], ramp(p), held(p)) for p in data])


def set_status(config: Config, playbook_id: str, wanted: str, at: datetime, note: str | None) -> str:
    found = statuses.find(declared(Path(config.playbooks)), playbook_id)
    return statuses.set_status(connect(config.database), found, wanted, at, note)
