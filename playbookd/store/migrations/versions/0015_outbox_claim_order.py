"""the claim's index: queued mail in the order delivery takes it (priority first, then the oldest due),
so each round reads its first rows off the index instead of sorting every queued row

A full index, not one partial on state = 'queued': the claim binds the state as a parameter, and
PostgreSQL's generic plan for a prepared statement cannot use a partial index through one.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_claim", "outbox",
                    ["state", sa.text("priority DESC"), "not_before", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_claim", table_name="outbox")
