"""Which playbooks the store can narrow to candidates, and the one WHERE that reads them.

A playbook whose entry condition has parts SQL answers (store.prefilter) need be evaluated only on
the accounts that WHERE lets through: every account it would enrol is among them, so the answers
are those of the rules engine over every account. The others ("open": regex, changes, contacts,
trends, `not`...) need every account. When no playbook is open, engine.enroll gives the rules engine
only the accounts the WHERE lets through. It reads only those where no account is needed for
anything else: simulate, and an incremental evaluation's trend and calendar playbooks, whose
left-out accounts have no change pending (nothing wrote them since an evaluation saw them and
consumed their changes). A full evaluation's ledger computes every account's next due time and
consumes the changes seen: it reads every account with the WHERE as a column (one read costs less
than two: measured, bench/evaluation.py), and decodes of a left-out account only the fields its due
time reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from playbookd.model.conditions import Condition
from playbookd.model.steps import Playbook
from playbookd.store import prefilter


@dataclass(frozen=True)
class Split:
    open: list[Playbook]
    narrowed: list[Playbook]
    where: prefilter.Where | None  # the accounts any narrowed playbook can enrol


def split(rules: Sequence[tuple[Playbook, Condition]], now: datetime, tz: ZoneInfo, dialect: str) -> Split:
    """The playbooks, by whether SQL narrows their entry condition at `now`."""
    open_: list[Playbook] = []
    narrowed: list[tuple[Playbook, prefilter.Where | None]] = []
    for playbook, cond in rules:
        found = prefilter.where(cond, now, tz, dialect)
        if found is None:
            open_.append(playbook)
        else:
            narrowed.append((playbook, found))
    where = prefilter.any_of([w for _, w in narrowed], dialect)
    return Split(open_, [p for p, _ in narrowed], where)
