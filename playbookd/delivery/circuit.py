"""A circuit breaker for refusals that are about us, not the recipient.

When the server refuses `delivery.smtp.circuit_after` messages in a row for its policy or our
setup (5.7.x: relaying denied, SPF, DKIM), every message behind them would be refused the same
way. The circuit opens: those messages go back to the queue, the rest stay there, and delivery
pauses for a cool-down that grows with each opening (delivery/backoff). Then the next message is
tried: refused again, the circuit opens for longer; taken (or refused for its recipient alone), the
circuit closes and delivery goes on. The state is in the store, so every replica pauses, and
`status` and /metrics show it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from playbookd.delivery.backoff import backoff
from playbookd.store import state

KEY = "smtp_circuit"
MAX_COOL_DOWN = timedelta(hours=1)

log = logging.getLogger("playbookd.delivery")


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass
class Circuit:
    after: int  # refusals in a row that open it; 0: never
    streak: list[int] = field(default_factory=list)  # outbox ids refused in a row while closed
    reply: str | None = None  # the latest refusal, in full
    opened_at: datetime | None = None  # when it first opened, kept while it re-opens
    until: datetime | None = None  # set while open: nothing is sent before then
    openings: int = 0

    @classmethod
    def load(cls, conn: Connection, after: int) -> Circuit:
        value: dict[str, Any] = state.read(conn, KEY) or {}
        return cls(after, [int(i) for i in value.get("streak", [])], value.get("reply"),
                   _when(value.get("opened_at")), _when(value.get("until")), int(value.get("openings", 0)))

    @property
    def active(self) -> bool:
        """Refusals are counting or the circuit is open: a delivery must tell it."""
        return bool(self.streak) or self.until is not None

    def is_open(self, now: datetime) -> bool:
        return self.until is not None and now < self.until

    def refused(self, conn: Connection, outbox_id: int, reply: str, now: datetime) -> list[int]:
        """Count a 5.7.x refusal of `outbox_id`; when it opens (or re-opens) the circuit, the ids of the
        messages to hold back (this one and those refused in a row before it), else []."""
        if self.after == 0:
            return []
        self._refresh(conn)  # another replica may have counted refusals too
        probing = self.until is not None  # the first try after a cool-down was refused too
        self.streak.append(outbox_id)
        self.reply = reply
        if not probing and len(self.streak) < self.after:
            self._save(conn)
            return []
        held, self.streak = self.streak, []
        self.openings += 1
        self.opened_at = self.opened_at or now
        self.until = now + backoff(self.openings, MAX_COOL_DOWN)
        self._save(conn)
        log.error("delivery paused until %s: the mail server refused %d message(s) in a row for its policy or our "
                  "setup (5.7.x), opening %d; they stay queued. Last reply: %s", self.until.isoformat(),
                  len(held), self.openings, reply, extra={"circuit": "open"})
        return held

    def passed(self, conn: Connection) -> None:
        """The server took a message, or refused it for its recipient alone: our setup is fine."""
        if not self.active:
            return
        self._refresh(conn)
        if self.until is not None:
            log.warning("delivery resumed: the mail server takes our mail again after %d opening(s) of the "
                        "circuit", self.openings, extra={"circuit": "closed"})
        self.streak, self.reply, self.opened_at, self.until, self.openings = [], None, None, None, 0
        state.drop(conn, KEY)

    def _refresh(self, conn: Connection) -> None:
        stored = Circuit.load(conn, self.after)
        self.streak, self.reply, self.opened_at, self.until, self.openings = (
            stored.streak, stored.reply, stored.opened_at, stored.until, stored.openings)

    def describe(self) -> str:
        return (f"delivery paused until {self.until.isoformat() if self.until else '?'} (opened "
                f"{self.opened_at.isoformat() if self.opened_at else '?'}, {self.openings} time(s)): the mail server "
                f"refuses our mail for its policy or our setup (5.7.x); last reply: {self.reply}")

    def _save(self, conn: Connection) -> None:
        state.write(conn, KEY, {"streak": self.streak, "reply": self.reply, "openings": self.openings,
                                "opened_at": self.opened_at.isoformat() if self.opened_at else None,
                                "until": self.until.isoformat() if self.until else None})


def current(conn: Connection) -> dict[str, Any] | None:
    """The open circuit as `status` and /metrics show it, or None when delivery is not paused."""
    value = state.read(conn, KEY)
    if not value or not value.get("until"):
        return None
    return {"since": value.get("opened_at"), "until": value["until"], "openings": value.get("openings"),
            "last_reply": value.get("reply")}
