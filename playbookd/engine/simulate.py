"""simulate: who would enter which playbook at a moment, with the first step; changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from playbookd.config.durations import format_duration
from playbookd.delivery.recipients import Filter, eligible, load_contacts
from playbookd.engine import launch
from playbookd.engine.enroll import Candidate, candidates, statuses
from playbookd.errors import UserError, did_you_mean
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
    pick_variant,
    step_kind,
)
from playbookd.runtime import Runtime
from playbookd.store.chunks import chunked


@dataclass(frozen=True)
class Entry:
    candidate: Candidate
    first: dict[str, Any]
    waits: bool = False  # past its ramped playbook's number for the day: it waits for a later day
    emails: int = 0  # emails its first cycle sends (the steps before the first wait)

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"playbook": c.playbook.id, "account": c.account_id, "segment": c.segment, "step": 0,
                **self.first, **({"waits": True} if self.waits else {})}


def step_filter(runtime: Runtime, step: EmailStep, at: datetime) -> Filter | None:
    return None if step.only is None else Filter(step.only, at, runtime.config.tz)


def _email(runtime: Runtime, conn: Connection, c: Candidate, step: EmailStep,
           people: dict[str, list[Any]], at: datetime) -> dict[str, Any]:
    variant = pick_variant(step.variants, c.playbook.id, c.account_id)
    try:
        template = runtime.templates.resolve(variant.template, c.segment)
    except UserError:
        template = None
    ok, _ = eligible(conn, people.get(c.account_id, []), step.to, c.playbook.category,
                     step_filter(runtime, step, at))
    out: dict[str, Any] = {"action": "email", "template": template, "to": sorted(p.email for p in ok)}
    if variant.name:
        out["variant"] = variant.name
    return out


def first_step(runtime: Runtime, conn: Connection, c: Candidate, people: dict[str, list[Any]],
               at: datetime) -> dict[str, Any]:
    if entry_group(c.playbook, c.account_id) == CONTROL:
        return {"action": "none", "group": CONTROL, "note": "held back: the control group gets no steps"}
    step: Step = c.playbook.steps[0]
    if isinstance(step, EmailStep):
        return _email(runtime, conn, c, step, people, at)
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


def first_cycle_emails(runtime: Runtime, conn: Connection, c: Candidate, people: dict[str, list[Any]],
                       at: datetime) -> int:
    count = 0
    for step in c.playbook.steps:
        if isinstance(step, WaitStep):
            break
        if isinstance(step, EmailStep):
            count += len(eligible(conn, people.get(c.account_id, []), step.to, c.playbook.category,
                                  step_filter(runtime, step, at))[0])
    return count


def chosen(runtime: Runtime, engine: Engine, only: Sequence[str] = ()) -> list[Playbook]:
    """The state-triggered playbooks to simulate: the live ones, or those asked for whatever their status
    (a draft is simulated as if it were live: that is how it is checked before it goes live)."""
    if not only:
        status = statuses(runtime, engine)
        return [p for p in runtime.playbooks if p.event is None and status[p.id] == "live"]
    known = {p.id: p for p in runtime.playbooks}
    for pid in only:
        if pid not in known:
            raise UserError(f"no playbook {pid!r}{did_you_mean(pid, known, '')}; known: {', '.join(known)}")
        if known[pid].event is not None:
            raise UserError(f"{pid} starts on '{known[pid].event}' events; simulate covers state-triggered playbooks")
    return [known[pid] for pid in dict.fromkeys(only)]


def _waiting(runtime: Runtime, engine: Engine, found: list[Candidate], at: datetime) -> set[tuple[str, str]]:
    """(playbook, account) of candidates past their ramped playbook's room today, first qualified first."""
    waits: set[tuple[str, str]] = set()
    by_playbook: dict[str, list[Candidate]] = {}
    for c in found:
        if c.playbook.launch.ramped:
            by_playbook.setdefault(c.playbook.id, []).append(c)
    with engine.connect() as conn:
        for group in by_playbook.values():
            playbook = group[0].playbook
            ramp = launch.ramp(conn, playbook.id, playbook.launch, at, runtime.config.tz)
            assert ramp is not None
            since = launch.waiting_since(conn, playbook.id, [c.account_id for c in group])
            ordered = sorted(group, key=lambda c: (since.get(c.account_id, at), c.account_id))
            waits.update((playbook.id, c.account_id) for c in ordered[ramp.room:])
    return waits


def simulate(runtime: Runtime, engine: Engine, at: datetime, only: Sequence[str] = ()) -> Iterator[Entry]:
    """Entries sorted by playbook then account."""
    found = sorted(candidates(runtime, engine, at, playbooks=chosen(runtime, engine, only)),
                   key=lambda c: (c.playbook.id, c.account_id))
    waits = _waiting(runtime, engine, found, at)
    for chunk in chunked(found, 500):
        with engine.connect() as conn:
            people = load_contacts(conn, {c.account_id for c in chunk})
            for c in chunk:
                waiting = (c.playbook.id, c.account_id) in waits
                yield Entry(c, first_step(runtime, conn, c, people, at), waiting,
                            0 if waiting else first_cycle_emails(runtime, conn, c, people, at))


def as_json(entry: Entry) -> str:
    return json.dumps(entry.as_dict(), sort_keys=False, default=str)


def as_row(entry: Entry) -> tuple[str, ...]:
    d = entry.as_dict()
    what = (d.get("template") or d.get("title") or d.get("note") or d.get("wait") or d.get("url")
            or json.dumps(d.get("set")))
    action = d["action"] + (" (a later day: launch.max_new_per_day)" if entry.waits else "")
    return (d["playbook"], d["account"], d["segment"], action, str(what), ", ".join(d.get("to", [])))
