"""alerts: what fires, since when, when last sent, which channels still owe its notice

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("since", sa.String(32), nullable=False),
        sa.Column("last_sent", sa.String(32), nullable=True),
        sa.Column("resolved_at", sa.String(32), nullable=True),
        sa.Column("owed", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alerts")
