"""What an evaluation learns about the accounts it looked at, written once it is done.

For each account read: `unseen` as it was read, and its next due time (engine.due) from its values
now, brought forward to the end of a re-entry cooldown that kept it out. Written after the
evaluation's enrollments (store.marks.settle): an evaluation stopped half way leaves the accounts
unseen, so the next one looks at them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from sqlalchemy.engine import Engine

from playbookd.engine.due import DueTimes
from playbookd.model.account import AccountRecord
from playbookd.model.evaluation import epoch_us
from playbookd.store import marks
from playbookd.store.accounts import Marks


class Ledger:
    def __init__(self, dues: DueTimes, now: datetime, before: Mapping[str, int] | None = None) -> None:
        self.dues = dues
        self.now = now
        self.before = before  # `unseen` when the evaluation began: never clear a write that came after
        self.read: Marks = {}  # filled by the store as it reads accounts
        self.seen: list[marks.Mark] = []
        self.cooldowns: dict[str, int] = {}

    def watch(self, records: Iterable[AccountRecord]) -> Iterator[AccountRecord]:
        """The records, each noted with its next due time as it passes (its contacts attached)."""
        for record in records:
            unseen, due = self.read.pop(record["id"], (0, None))
            if self.before is not None:  # written after goals and exits read it: the next evaluation looks again
                unseen = min(unseen, self.before.get(record["id"], 0))
            new_due = self.dues.next_flip(record, self.now) if self.dues else None
            if unseen or new_due != due:
                self.seen.append((record["id"], unseen, new_due))
            yield record

    def cooldown(self, account_id: str, until: datetime) -> None:
        at = epoch_us(until, self.dues.tz)
        self.cooldowns[account_id] = min(at, self.cooldowns.get(account_id, at))

    def settle(self, engine: Engine) -> None:
        marks.settle(engine, self.seen)
        marks.due_no_later(engine, self.cooldowns)
        self.seen, self.cooldowns = [], {}
