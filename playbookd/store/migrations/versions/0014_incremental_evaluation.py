"""incremental evaluation: per account, the writes no evaluation has seen yet (`unseen`) and the next
moment a time-based condition can flip (`due_us`); per range, whether it evaluates every account

Existing accounts start unseen: the first evaluation after the upgrade is a full one anyway.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("unseen", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("due_us", sa.BigInteger(), nullable=True))
    op.create_index("ix_accounts_unseen", "accounts", ["unseen"])
    op.create_index("ix_accounts_due", "accounts", ["due_us"])
    with op.batch_alter_table("ranges") as batch:
        batch.add_column(sa.Column("full", sa.Boolean(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("ranges") as batch:
        batch.drop_column("full")
    op.drop_index("ix_accounts_due", table_name="accounts")
    op.drop_index("ix_accounts_unseen", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("due_us")
        batch.drop_column("unseen")
