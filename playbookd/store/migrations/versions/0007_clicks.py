"""clicks: each tracked link fetched, as a click or as a mail scanner's fetch

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(length=200), nullable=False),
        sa.Column("link", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("enrollment_id", sa.BigInteger(), nullable=True),
        sa.Column("playbook_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_key", "link", "kind", "reason", name="uq_clicks_once"),
    )
    op.create_index("ix_clicks_enrollment", "clicks", ["enrollment_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_clicks_enrollment", table_name="clicks")
    op.drop_table("clicks")
