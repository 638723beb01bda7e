"""enrollments record their group (control, variant, treatment), their segment at entry and whether
their goal already held at entry; reports read enrollments by playbook and entry time

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: enrollments made before this revision have no group and count as ungrouped
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("goal_at_entry", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("group_name", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("segment", sa.String(length=100), nullable=True))
    op.create_index("ix_enrollments_entered", "enrollments", ["playbook_id", "entered_at"])


def downgrade() -> None:
    op.drop_index("ix_enrollments_entered", table_name="enrollments")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("segment")
        batch.drop_column("group_name")
        batch.drop_column("goal_at_entry")
