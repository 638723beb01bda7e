"""Which accounts an evaluation looks at: every one (full), or those changed or due (incremental).

An incremental evaluation takes the accounts written since an evaluation last saw them (store.marks:
sync, contacts, health, a playbook's `set`, an enrollment that started, ended or changed state) and
those whose due time has come (engine.due: a time-based condition can flip, a re-entry cooldown
ended). Any other account would get the answer it got last time, so it is left alone; entry, exits,
goals and audience checks all use the same set.

A full evaluation runs when no full one is recorded, when what the answers depend on changed (the
live playbooks and their conditions, the project-wide exit_when, the time zone, the health rules:
a fingerprint of them), and every `evaluation.full_every` as a safety net. Playbooks with a trend
condition, and calendar playbooks at an occurrence, are evaluated over every account every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from playbookd.engine.due import DueTimes, volatile
from playbookd.model.conditions import CHANGE, leaves
from playbookd.model.evaluation import epoch_us
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import launch, marks, state
from playbookd.store.accounts import load_account_types
from playbookd.store.marks import IdRange

KEY = "full_evaluation"  # state: {"at": ISO time, "fingerprint": hex} of the latest full evaluation


@dataclass(frozen=True)
class Scope:
    """`accounts` None: every account. Else the accounts to look at, each with `unseen` as read, and
    `everyone`, the playbooks evaluated over every account all the same."""

    accounts: Mapping[str, int] | None = None
    everyone: frozenset[str] = frozenset()
    # a full evaluation's `unseen` as read before its goals and exits (an incremental one's is `accounts`)
    before: Mapping[str, int] | None = None

    @property
    def read_first(self) -> Mapping[str, int] | None:
        """`unseen` of each account as read when the evaluation began, None if not read: the most an
        evaluation may clear, so a write landing after its goals or exits read an account stays."""
        return self.before if self.accounts is None else self.accounts

    @property
    def full(self) -> bool:
        return self.accounts is None


FULL = Scope()


def conditions(runtime: Runtime, playbook: Playbook) -> list[Any]:
    """What the evaluation tests for a playbook: entry, exit, goal, and the project-wide exit."""
    return [runtime.exit_when, playbook.trigger, playbook.exit_when, playbook.goal.when if playbook.goal else None]


def always_full(runtime: Runtime, playbooks: Sequence[Playbook]) -> frozenset[str]:
    """Playbooks whose answers can change with neither a write nor a known flip time."""
    return frozenset(p.id for p in playbooks if any(volatile(c) for c in conditions(runtime, p)))


def reads_changes(runtime: Runtime) -> bool:
    """Some condition tests `changed*`: its answer flips when an evaluation consumes the change."""
    return any(leaf.op in CHANGE for p in runtime.playbooks for c in conditions(runtime, p) if c is not None
               for leaf in leaves(c))


def due_times(runtime: Runtime, playbooks: Sequence[Playbook]) -> DueTimes:
    return DueTimes([c for p in playbooks for c in conditions(runtime, p)], runtime.config.tz)


def fingerprint(runtime: Runtime, statuses: Mapping[str, str], types: Mapping[str, str]) -> str:
    """Everything an account's answers depend on beside the account and the clock. The fields' types
    are in it: a sync that retypes a column (a date read as a datetime) changes how every account
    reads, written or not."""
    parts: list[Any] = [str(runtime.config.tz), repr(runtime.exit_when), sorted(types.items()),
                        runtime.config.health.model_dump_json() if runtime.config.health else None]
    for p in sorted(runtime.playbooks, key=lambda p: p.id):
        if statuses.get(p.id) in ("live", "paused"):
            parts.append((p.id, statuses[p.id], p.segments, p.event, repr(p.trigger), repr(p.reenter_after),
                          repr(p.exit_when), repr(p.goal), repr(p.schedule), repr(p.launch)))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _current(runtime: Runtime, conn: Connection) -> str:
    return fingerprint(runtime, launch.statuses(runtime.playbooks, conn), load_account_types(conn))


def wants_full(runtime: Runtime, conn: Connection, now: datetime) -> str | None:
    """Why the evaluation at `now` must look at every account, None if it need not."""
    last = state.read(conn, KEY)
    if not isinstance(last, dict) or "at" not in last:
        return "no full evaluation recorded"
    if last.get("fingerprint") != _current(runtime, conn):
        return "playbooks, their statuses, the fields' types or the settings they depend on changed"
    if now - datetime.fromisoformat(str(last["at"])) >= runtime.config.evaluation.full_every:
        return "evaluation.full_every has passed"
    return None


def record_full(runtime: Runtime, conn: Connection, now: datetime) -> None:
    """In the transaction that makes the full evaluation at `now` happen (or records it done)."""
    prints = _current(runtime, conn)
    state.write(conn, KEY, {"at": now.isoformat(), "fingerprint": prints})


def scope(runtime: Runtime, engine: Engine, now: datetime, full: bool, playbooks: Sequence[Playbook],
          id_range: IdRange = None) -> Scope:
    if full:
        return Scope(before=marks.written(engine, id_range))
    found = marks.pending(engine, epoch_us(now, runtime.config.tz), id_range)
    return Scope(found, always_full(runtime, playbooks))
