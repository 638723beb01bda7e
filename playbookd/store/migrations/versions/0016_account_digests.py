"""account digests: an accounts source after the first one in the configuration (a billing export
beside a CRM export, over the same ids) keeps its rows' digests here, keyed by source, so each
source's unchanged rows skip; in `accounts.source_digest` alone the two overwrote each other and
every row of both was compared and its digest rewritten at every sync

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_digests",
        sa.Column("source", sa.String(length=200), primary_key=True),
        sa.Column("account_id", sa.String(length=200), primary_key=True),
        sa.Column("digest", sa.String(length=32), nullable=False),
    )
    op.create_index("ix_account_digests_account", "account_digests", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_account_digests_account", table_name="account_digests")
    op.drop_table("account_digests")
