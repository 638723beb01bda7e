"""enrollments remember the stable key of their next step; webhooks name their enrollment

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: enrollments made before this revision keep going by their step index
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("step_key", sa.String(length=200), nullable=True))
    # so a webhook queued by an enrollment that has since exited is not posted
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("enrollment_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("enrollment_id")
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("step_key")
