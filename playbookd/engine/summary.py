"""`simulate --summary`: how many accounts each playbook would take in, by segment and first action,
how many emails its first cycle would send, and a warning where that is more than `warn_over`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from playbookd.engine import simulate
from playbookd.engine.enroll import statuses
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime


@dataclass
class Group:
    segment: str
    action: str
    what: str
    accounts: int = 0
    entering: int = 0  # enter at the next evaluation; the others wait for a later day of the ramp
    emails: int = 0  # sent in the first cycle of those entering

    def as_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "action": self.action, "what": self.what, "accounts": self.accounts,
                "entering": self.entering, "emails": self.emails}


@dataclass
class Summary:
    playbook: Playbook
    status: str
    warn_over: int
    groups: dict[tuple[str, str, str], Group] = field(default_factory=dict)

    @property
    def accounts(self) -> int:
        return sum(g.accounts for g in self.groups.values())

    @property
    def entering(self) -> int:
        return sum(g.entering for g in self.groups.values())

    @property
    def emails(self) -> int:
        return sum(g.emails for g in self.groups.values())

    @property
    def over(self) -> bool:
        return self.emails > self.warn_over

    def warning(self) -> str | None:
        if not self.over:
            return None
        ramp = ("its launch.max_new_per_day is too high for that" if self.playbook.launch.ramped
                else "ramp it in with launch: {max_new_per_day: N}")
        return (f"{self.playbook.id} would send {self.emails} emails in its first cycle, more than launch.warn_over "
                f"({self.warn_over}): {ramp}, or keep it as status: draft until the numbers look right")

    def as_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook.id, "status": self.status, "accounts": self.accounts,
                "entering": self.entering, "emails": self.emails, "warn_over": self.warn_over, "over": self.over,
                "groups": [g.as_dict() for g in self.groups.values()]}


def _add(summary: Summary, entry: simulate.Entry) -> None:
    _, _, segment, _, what, _ = simulate.as_row(entry)
    key = (segment, entry.first["action"], what)
    group = summary.groups.setdefault(key, Group(segment, entry.first["action"], what))
    group.accounts += 1
    if not entry.waits:
        group.entering += 1
        group.emails += entry.emails


def summarize(runtime: Runtime, engine: Engine, at: datetime, only: Sequence[str] = ()) -> list[Summary]:
    """One summary per simulated playbook, including those no account would enter."""
    status = statuses(runtime, engine)
    default = runtime.config.launch.warn_over
    found = {p.id: Summary(p, status[p.id], p.launch.warn_over or default)
             for p in simulate.chosen(runtime, engine, only)}
    for entry in simulate.simulate(runtime, engine, at, only):
        _add(found[entry.candidate.playbook.id], entry)
    return sorted(found.values(), key=lambda s: s.playbook.id)


def warnings(summaries: Iterable[Summary]) -> list[str]:
    return [w for s in summaries if (w := s.warning()) is not None]
