"""each target's standing from its last WORM check

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "target_worm",
        sa.Column("target", sa.String(64), primary_key=True),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("checked_at", sa.String(32), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("target_worm")
