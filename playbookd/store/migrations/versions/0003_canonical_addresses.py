"""addresses stored before they were normalised take their canonical form

Contacts, suppressions, soft-bounce counts and outbox messages are compared by plain string, so a
contact stored as `"a"@example.com` or `a(x)@example.com` would escape the suppression of
`a@example.com`, and `user@bücher.example` would never meet `user@xn--bcher-kva.example`. Where two
stored spellings meet, one row is kept: the contact already in canonical form (the other one's
queued messages are skipped, so nobody is mailed twice), the suppression or bounce count already
there. Addresses that cannot be normalised are left as they are (the next sync reports their row);
audit entries keep what they said at the time. Nothing to undo on downgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:00:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from playbookd.model.addresses import canonical_or_none

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

contacts = sa.table("contacts", sa.column("id"), sa.column("account_id"), sa.column("email"))
suppressions = sa.table("suppressions", sa.column("email"), sa.column("category"))
bounces = sa.table("bounces", sa.column("email"))
outbox = sa.table("outbox", sa.column("id"), sa.column("contact_id"), sa.column("to_addr"), sa.column("state"),
                  sa.column("last_error"))


def _changed(conn: sa.Connection, query: sa.Select[Any], column: str) -> Iterator[tuple[Any, str]]:
    """(row, canonical address) for each row whose address is not canonical but can be made so."""
    for row in conn.execute(query.execution_options(yield_per=5000)):
        address = canonical_or_none(getattr(row, column))
        if address is not None and address != getattr(row, column):
            yield row, address


def _contacts(conn: sa.Connection) -> None:
    for row, address in list(_changed(conn, sa.select(contacts), "email")):
        twin = conn.execute(sa.select(contacts.c.id).where(contacts.c.account_id == row.account_id,
                                                           contacts.c.email == address)).first()
        if twin is None:
            conn.execute(contacts.update().where(contacts.c.id == row.id).values(email=address))
            continue
        conn.execute(outbox.update().where(outbox.c.contact_id == row.id, outbox.c.state == "queued")
                     .values(state="skipped", last_error="duplicate_contact"))
        conn.execute(contacts.delete().where(contacts.c.id == row.id))


def _keyed(conn: sa.Connection, table: sa.TableClause, *key: str) -> None:
    """Suppressions and bounces: the canonical row wins when both spellings are there."""
    for row, address in list(_changed(conn, sa.select(table), "email")):
        same = [table.c[k] == getattr(row, k) for k in key]
        taken = conn.execute(sa.select(table.c.email).where(table.c.email == address, *same)).first()
        match = sa.and_(table.c.email == row.email, *same)
        if taken is None:
            conn.execute(table.update().where(match).values(email=address))
        else:
            conn.execute(table.delete().where(match))


def upgrade() -> None:
    conn = op.get_bind()
    _contacts(conn)
    _keyed(conn, suppressions, "category")
    _keyed(conn, bounces)
    for row, address in list(_changed(conn, sa.select(outbox.c.id, outbox.c.to_addr), "to_addr")):
        conn.execute(outbox.update().where(outbox.c.id == row.id).values(to_addr=address))


def downgrade() -> None:
    pass  # a canonical address is still a valid one: nothing to undo
