"""The audit log: every decision about an account, with its reason, queryable by history."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.engine import Engine

from playbookd.model.addresses import lookup_form
from playbookd.store.database import aware, utcnow
from playbookd.store.schema import audit

# The vocabulary of decisions; `reason` says why for skips and exits.
ENTERED, STEP_DONE, STEP_SKIPPED, EXITED, COMPLETED = (
    "entered", "step_done", "step_skipped", "exited", "completed",
)
QUEUED, SENT, FAILED, DEFERRED, UNKNOWN = "queued", "sent", "failed", "deferred", "unknown"
GOAL_MET, SYNCED = "goal_met", "synced"
EVALUATION_FAILED = "evaluation_failed"  # the rules engine could not evaluate the account
STEP_FAILED = "step_failed"  # a step could not run; its enrollment waits in `failed` for a retry
RETRIED = "retried"  # an operator ran a failed enrollment again
STEP_MOVED = "step_moved"  # the playbook was edited: the enrollment goes on from its step's new place
HEADER_CUT = "header_cut"  # a header value from data (subject, account id) was cut at limits.header_chars
CALENDAR_RUN = "calendar_run"  # an occurrence of a calendar playbook's schedule enters its accounts
CALENDAR_MISSED = "calendar_missed"  # an occurrence found only after its catch_up: nobody enters


@dataclass(frozen=True)
class Entry:
    at: datetime
    account_id: str | None
    playbook_id: str | None
    enrollment_id: int | None
    step: int | None
    contact: str | None
    event: str
    reason: str | None
    detail: Any

    def line(self) -> str:
        parts = [self.at.strftime("%Y-%m-%d %H:%M:%S"), self.event.ljust(12)]
        parts += [f"{k}={v}" for k, v in (("account", self.account_id), ("playbook", self.playbook_id),
                                          ("step", self.step), ("contact", self.contact)) if v is not None]
        if self.reason:
            parts.append(f"reason={self.reason}")
        if isinstance(self.detail, dict) and self.detail.get("task"):
            parts.append(f"task={self.detail['task']}")
        if isinstance(self.detail, dict) and self.detail.get("user"):
            parts.append(f"user={self.detail['user']}")
        if isinstance(self.detail, dict) and self.detail.get("group"):
            parts.append(f"group={self.detail['group']}")
        if isinstance(self.detail, dict) and self.detail.get("error"):
            parts.append(f"error={self.detail['error']!r}")  # the full text: a reason code alone says too little
        return "  ".join(parts)


def record(conn: Connection, event: str, *, account_id: str | None = None,
           playbook_id: str | None = None, enrollment_id: int | None = None, step: int | None = None,
           contact: str | None = None, reason: str | None = None, detail: Any = None,
           at: datetime | None = None) -> None:
    _write(conn, [{
        "at": at or utcnow(), "account_id": account_id, "playbook_id": playbook_id,
        "enrollment_id": enrollment_id, "step": step, "contact": contact, "event": event, "reason": reason,
        "detail": detail,
    }])


def record_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert; each row has the keyword arguments of `record`."""
    if rows:
        defaults = {"account_id": None, "playbook_id": None, "enrollment_id": None, "step": None,
                    "contact": None, "reason": None, "detail": None}
        _write(conn, [{**defaults, "at": utcnow(), **row} for row in rows])


_HELD = "playbookd.audit.held"  # in Connection.info: the entries `held` keeps back


def _write(conn: Connection, rows: list[dict[str, Any]]) -> None:
    held: list[dict[str, Any]] | None = conn.info.get(_HELD)
    if held is not None:
        held += rows
    else:  # the values as parameters: the statement compiles once, not once per entry
        conn.execute(insert(audit), rows[0] if len(rows) == 1 else rows)


@contextmanager
def held(conn: Connection) -> Iterator[None]:
    """Entries recorded on `conn` inside are written when it ends, in their order and in one
    statement rather than one each; on an exception none are (their transaction is lost with them).
    Nothing reads the audit trail back inside such a block."""
    rows: list[dict[str, Any]] = []
    info = conn.info  # read once: a connection the store dropped midway refuses even this, hiding why
    info[_HELD] = rows
    try:
        yield
    finally:
        info.pop(_HELD, None)
    if rows:
        conn.execute(insert(audit), rows)


def holding(conn: Connection) -> bool:
    """Whether entries recorded on `conn` are held back now (inside `held`)."""
    return _HELD in conn.info


def held_count(conn: Connection) -> int:
    """How many entries are held back now: `drop_held` takes back those recorded after."""
    return len(conn.info.get(_HELD, ()))


def drop_held(conn: Connection, count: int) -> None:
    """Forget the entries held back after the first `count` (a savepoint rolled back what they say)."""
    del conn.info.get(_HELD, [])[count:]


def history(conn: Connection, account_id: str | None = None, playbook_id: str | None = None,
            limit: int = 200, contact: str | None = None) -> Iterator[Entry]:
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if contact:
        # as the address was stored: canonical (Dana@Bücher.example finds dana@xn--bcher-kva.example)
        query = query.where(audit.c.contact == lookup_form(contact))
    if account_id:
        query = query.where(audit.c.account_id == account_id)
    if playbook_id:
        query = query.where(audit.c.playbook_id == playbook_id)
    rows = list(conn.execute(query))
    for row in reversed(rows):
        yield Entry(aware(row.at) or utcnow(), row.account_id, row.playbook_id, row.enrollment_id,
                    row.step, row.contact, row.event, row.reason, row.detail)


def count_at(engine: Engine, event: str, at: datetime) -> int:
    """How many `event` entries one cycle at `at` recorded (failures a cycle must report)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit)
                                .where(audit.c.event == event, audit.c.at == at)).scalar_one())
