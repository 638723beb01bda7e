"""console indexes: one account's enrollments, emails and tasks, the task queue, and a playbook's
report joins (outbox and audit by enrollment), so the console's pages stay fast on a large base

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_enrollments_account", "enrollments", ["account_id"]),
    ("ix_outbox_account", "outbox", ["account_id", "id"]),
    ("ix_outbox_enrollment", "outbox", ["enrollment_id"]),
    ("ix_tasks_queue", "tasks", ["state", "assignee", "due_at"]),
    ("ix_tasks_account", "tasks", ["account_id"]),
    ("ix_audit_enrollment", "audit", ["enrollment_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
