"""source digests: accounts and contacts remember a digest of the source row they were last synced
from, so a sync recognises an unchanged row before typing, segmenting and comparing it

NULL (every row after this upgrade, and a row a playbook or a bounce changed since) means "compare
it in full".

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("accounts", "contacts")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("source_digest", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source_digest")
