"""report indexes: a playbook's report and its console page read covering indexes, driven from the
playbook's enrollments, instead of every sent email or each wide outbox row

ix_outbox_report and ix_audit_enrollment_event start with enrollment_id, so they replace the
single-column indexes of 0009 on it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CREATED = (
    ("ix_enrollments_report", "enrollments",
     ["playbook_id", "state", "group_name", "goal_at_entry", "goal_met_at", "entered_at", "step"]),
    ("ix_enrollments_goals", "enrollments", ["playbook_id", "goal_met_at"]),
    ("ix_outbox_report", "outbox", ["enrollment_id", "state", "to_addr", "sent_at", "category"]),
    ("ix_audit_enrollment_event", "audit", ["enrollment_id", "event"]),
)
REPLACED = (
    ("ix_outbox_enrollment", "outbox", ["enrollment_id"]),
    ("ix_audit_enrollment", "audit", ["enrollment_id"]),
)


def upgrade() -> None:
    for name, table, columns in CREATED:
        op.create_index(name, table, columns)
    for name, table, _ in REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns)
    for name, table, _ in reversed(CREATED):
        op.drop_index(name, table_name=table)
