"""calendar playbooks record each occurrence of their schedule; the audit log is read by contact

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("playbook_id", sa.String(length=200), nullable=False),
        sa.Column("occurrence", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("playbook_id", "occurrence", name="uq_calendar_runs_occurrence"),
    )
    op.create_index("ix_calendar_runs_run_at", "calendar_runs", ["run_at"], unique=False)
    op.create_index("ix_audit_contact", "audit", ["contact", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_contact", table_name="audit")
    op.drop_index("ix_calendar_runs_run_at", table_name="calendar_runs")
    op.drop_table("calendar_runs")
