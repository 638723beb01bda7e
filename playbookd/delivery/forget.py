"""Erasing a person: `playbookd forget EMAIL` removes their personal data from the store, the outbox
and the audit log, and keeps only a hash of the address among the suppressions, so they stay
unsubscribed without being named."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.engine import Engine

from playbookd.model.addresses import lookup_form
from playbookd.store.database import insert_ignore, transaction
from playbookd.store.marks import touch
from playbookd.store.schema import audit, clicks, contacts, outbox, suppressions

HASHED = "sha256:"


def hashed(email: str) -> str:
    """How a forgotten address is kept: enough to recognise it, not to read it (of its canonical form)."""
    return HASHED + hashlib.sha256(lookup_form(email).encode()).hexdigest()


@dataclass
class Forgotten:
    contacts: int = 0
    messages: int = 0
    audit: int = 0

    def line(self, email: str) -> str:
        return (f"forgot {email}: {self.contacts} contact(s), {self.messages} message(s), {self.audit} audit "
                "entries; the address stays suppressed, kept only as a hash")


def _suppress_hashed(conn: Connection, address: str, forms: list[str], now: datetime) -> None:
    kept = conn.execute(select(suppressions).where(suppressions.c.email.in_(forms))).all()
    rows = [{"email": hashed(address), "category": r.category, "reason": r.reason, "note": None,
             "created_at": r.created_at} for r in kept]
    rows.append({"email": hashed(address), "category": "*", "reason": "forgotten", "note": None, "created_at": now})
    insert_ignore(conn, suppressions, rows)
    conn.execute(delete(suppressions).where(suppressions.c.email.in_(forms)))


def forget(engine: Engine, email: str, now: datetime) -> Forgotten:
    address, token = lookup_form(email), hashed(email)
    # the canonical form, and the address as typed for entries written before addresses were normalised
    forms = sorted({address, email.strip().lower()})
    done = Forgotten()
    with transaction(engine) as conn:
        gone = func.lower(contacts.c.email).in_(forms)
        theirs = select(contacts.c.account_id).where(gone)
        touch(conn, conn.execute(theirs).scalars())
        # the accounts' other contacts are compared with their source rows in full at the next sync
        # (no digest, see sync.digests), so contacts_active is counted again without this one
        conn.execute(update(contacts).where(contacts.c.account_id.in_(theirs), ~gone).values(source_digest=None))
        done.contacts = conn.execute(delete(contacts).where(gone)).rowcount
        mine = func.lower(outbox.c.to_addr).in_(forms)
        conn.execute(update(outbox).where(mine, outbox.c.state == "queued").values(state="dropped"))
        done.messages = conn.execute(update(outbox).where(mine).values(
            to_addr=token, subject="", html="", text="", headers={}, last_error=None)).rowcount
        # clicks stay counted (the report's rates), but no longer say whose they were or where they went
        conn.execute(update(clicks).where(func.lower(clicks.c.contact).in_(forms)).values(contact=token, url=""))
        done.audit = conn.execute(update(audit).where(func.lower(audit.c.contact).in_(forms)).values(
            contact=token, detail=None)).rowcount
        _suppress_hashed(conn, address, forms, now)
    return done
