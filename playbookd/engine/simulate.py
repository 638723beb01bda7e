"""simulate: who would enter which playbook at a moment, with the first step; changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from playbookd.config.durations import format_duration
from playbookd.delivery.recipients import eligible, load_contacts
from playbookd.engine.enroll import Candidate, candidates
from playbookd.errors import UserError
from playbookd.model.steps import (
    CONTROL,
    EmailStep,
    SetStep,
    Step,
    TaskStep,
    WaitStep,
    WebhookStep,
    entry_group,
    pick_variant,
    step_kind,
)
from playbookd.runtime import Runtime
from playbookd.store.chunks import chunked


@dataclass(frozen=True)
class Entry:
    candidate: Candidate
    first: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"playbook": c.playbook.id, "account": c.account_id, "segment": c.segment, "step": 0,
                **self.first}


def _email(runtime: Runtime, conn: Connection, c: Candidate, step: EmailStep,
           people: dict[str, list[Any]]) -> dict[str, Any]:
    variant = pick_variant(step.variants, c.playbook.id, c.account_id)
    try:
        template = runtime.templates.resolve(variant.template, c.segment)
    except UserError:
        template = None
    ok, _ = eligible(conn, people.get(c.account_id, []), step.to, c.playbook.category)
    out: dict[str, Any] = {"action": "email", "template": template, "to": sorted(p.email for p in ok)}
    if variant.name:
        out["variant"] = variant.name
    return out


def first_step(runtime: Runtime, conn: Connection, c: Candidate, people: dict[str, list[Any]]) -> dict[str, Any]:
    if entry_group(c.playbook, c.account_id) == CONTROL:
        return {"action": "none", "group": CONTROL, "note": "held back: the control group gets no steps"}
    step: Step = c.playbook.steps[0]
    if isinstance(step, EmailStep):
        return _email(runtime, conn, c, step, people)
    extra: dict[str, Any] = {}
    if isinstance(step, WaitStep):
        extra = {"wait": format_duration(step.span)}
    elif isinstance(step, TaskStep):
        extra = {"title": step.title, "assign": step.assign}
    elif isinstance(step, WebhookStep):
        extra = {"url": step.url}
    elif isinstance(step, SetStep):
        extra = {"set": dict(step.values)}
    return {"action": step_kind(step), **extra}


def simulate(runtime: Runtime, engine: Engine, at: datetime) -> Iterator[Entry]:
    """Entries sorted by playbook then account."""
    found = sorted(candidates(runtime, engine, at), key=lambda c: (c.playbook.id, c.account_id))
    for chunk in chunked(found, 500):
        with engine.connect() as conn:
            people = load_contacts(conn, {c.account_id for c in chunk})
            for c in chunk:
                yield Entry(c, first_step(runtime, conn, c, people))


def as_json(entry: Entry) -> str:
    return json.dumps(entry.as_dict(), sort_keys=False, default=str)


def as_row(entry: Entry) -> tuple[str, ...]:
    d = entry.as_dict()
    what = (d.get("template") or d.get("title") or d.get("note") or d.get("wait") or d.get("url")
            or json.dumps(d.get("set")))
    return (d["playbook"], d["account"], d["segment"], d["action"], str(what), ", ".join(d.get("to", [])))
