"""Erasing a person: `playbookd forget EMAIL` removes their personal data from the store, the outbox
and the audit log, and keeps only a hash of the address among the suppressions, so they stay
unsubscribed without being named."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.engine import Engine

from playbookd.store.database import insert_ignore, transaction
from playbookd.store.schema import audit, contacts, outbox, suppressions

HASHED = "sha256:"


def hashed(email: str) -> str:
    """How a forgotten address is kept: enough to recognise it, not to read it."""
    return HASHED + hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass
class Forgotten:
    contacts: int = 0
    messages: int = 0
    audit: int = 0

    def line(self, email: str) -> str:
        return (f"forgot {email}: {self.contacts} contact(s), {self.messages} message(s), {self.audit} audit "
                "entries; the address stays suppressed, kept only as a hash")


def _suppress_hashed(conn: Connection, address: str, now: datetime) -> None:
    kept = conn.execute(select(suppressions).where(suppressions.c.email == address)).all()
    rows = [{"email": hashed(address), "category": r.category, "reason": r.reason, "note": None,
             "created_at": r.created_at} for r in kept]
    rows.append({"email": hashed(address), "category": "*", "reason": "forgotten", "note": None, "created_at": now})
    insert_ignore(conn, suppressions, rows)
    conn.execute(delete(suppressions).where(suppressions.c.email == address))


def forget(engine: Engine, email: str, now: datetime) -> Forgotten:
    address, token = email.strip().lower(), hashed(email)
    done = Forgotten()
    with transaction(engine) as conn:
        done.contacts = conn.execute(delete(contacts).where(func.lower(contacts.c.email) == address)).rowcount
        mine = func.lower(outbox.c.to_addr) == address
        conn.execute(update(outbox).where(mine, outbox.c.state == "queued").values(state="dropped"))
        done.messages = conn.execute(update(outbox).where(mine).values(
            to_addr=token, subject="", html="", text="", headers={}, last_error=None)).rowcount
        done.audit = conn.execute(update(audit).where(func.lower(audit.c.contact) == address).values(
            contact=token, detail=None)).rowcount
        _suppress_hashed(conn, address, now)
    return done
