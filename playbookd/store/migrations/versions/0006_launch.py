"""launch controls: playbook states set in the database, the ramp's waiting list and daily counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playbook_states",
        sa.Column("playbook_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("yaml_status", sa.String(length=20), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("playbook_id"),
    )
    op.create_table(
        "launch_queue",
        sa.Column("playbook_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "account_id"),
    )
    op.create_index("ix_launch_queue_order", "launch_queue", ["playbook_id", "qualified_at"])
    op.create_table(
        "launch_days",
        sa.Column("playbook_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("launch_days")
    op.drop_index("ix_launch_queue_order", table_name="launch_queue")
    op.drop_table("launch_queue")
    op.drop_table("playbook_states")
