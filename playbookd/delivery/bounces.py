"""What a bounce means beyond the one message: suppression, and a key contact gone.

A hard bounce (unknown user) suppresses the address at once. Soft bounces (a 4xx reply
about the mailbox, such as "mailbox full") suppress it after SOFT_LIMIT in a row; a
successful delivery resets the count. Connection failures are the server's problem, not
the address's, and do not count. When the bounced contact was an account's champion or
admin, the account's `champion_left_at` / `admin_left_at` is set, exactly as when sync
sees the contact leave, so playbooks such as champion-left react to it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from playbookd.store import audit
from playbookd.store.accounts import set_fields
from playbookd.store.database import insert_ignore
from playbookd.store.marks import touch
from playbookd.store.schema import bounces, contacts, suppressions

SOFT_LIMIT = 3
LEFT_FIELDS = {"champion": "champion_left_at", "admin": "admin_left_at"}


def delivered(conn: Connection, email: str) -> None:
    conn.execute(delete(bounces).where(bounces.c.email == email.lower()))


def soft_bounce(conn: Connection, email: str, error: str, now: datetime) -> bool:
    """Count one soft bounce; True when this one reached the limit and the address is now suppressed."""
    email = email.lower()
    if not insert_ignore(conn, bounces, [{"email": email, "soft_in_row": 1, "updated_at": now}]):
        conn.execute(update(bounces).where(bounces.c.email == email)
                     .values(soft_in_row=bounces.c.soft_in_row + 1, updated_at=now))
    count = conn.execute(select(bounces.c.soft_in_row).where(bounces.c.email == email)).scalar_one()
    if count < SOFT_LIMIT:
        return False
    hard_bounce(conn, email, f"{count} soft bounces in a row; last: {error}", now)
    return True


def hard_bounce(conn: Connection, email: str, error: str, now: datetime) -> None:
    email = email.lower()
    insert_ignore(conn, suppressions, [{"email": email, "category": "*", "reason": "bounced",
                                        "note": error[:500], "created_at": now}])
    delivered(conn, email)
    for contact in conn.execute(select(contacts).where(contacts.c.email == email, contacts.c.status == "active")):
        # no digest: the next sync compares the contact with its source row in full (sync.digests)
        conn.execute(update(contacts).where(contacts.c.id == contact.id)
                     .values(status="bounced", source_digest=None))
        touch(conn, [contact.account_id])
        field = LEFT_FIELDS.get(contact.role or "")
        if field:
            set_fields(conn, contact.account_id, {field: now}, now)
            audit.record(conn, "contact_lost", account_id=contact.account_id, contact=email, reason="bounced",
                         detail={"role": contact.role, "field": field}, at=now)
