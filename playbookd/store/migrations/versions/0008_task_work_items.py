"""tasks as work items: snoozed, closed, refreshed, one open task per (playbook, account, step);
webhooks say whether a step or a task change queued them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Every new column is nullable or has a server default, so the tasks already stored stay as they are:
    # open, without a step identity (so they take no part in the one-open-task rule) and never refreshed.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("step_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("open_key", sa.String(length=620), nullable=True))
        batch.add_column(sa.Column("snoozed_until", _WHEN, nullable=True))
        batch.add_column(sa.Column("assigned_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("refresh_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("refreshed_at", _WHEN, nullable=True))
        batch.add_column(sa.Column("updated_at", _WHEN, nullable=True))
        batch.add_column(sa.Column("closed_at", _WHEN, nullable=True))
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    op.create_index("uq_tasks_open_key", "tasks", ["open_key"], unique=True)
    op.create_index("ix_tasks_state_due", "tasks", ["state", "due_at"])
    op.create_index("ix_tasks_enrollment", "tasks", ["enrollment_id"])
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("kind")
    op.drop_index("ix_tasks_enrollment", table_name="tasks")
    op.drop_index("ix_tasks_state_due", table_name="tasks")
    op.drop_index("uq_tasks_open_key", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        for name in ("revision", "closed_at", "updated_at", "refreshed_at", "refresh_count", "note", "assigned_by",
                     "snoozed_until", "open_key", "step_key"):
            batch.drop_column(name)
