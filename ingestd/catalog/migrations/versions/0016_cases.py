"""cases: closed cases, their archive window and their archive

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_no", sa.String(200), primary_key=True),
        sa.Column("closed_at", sa.String(32), nullable=False),
        sa.Column("closed_by", sa.String(200), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
        sa.Column("archived_at", sa.String(32), nullable=True),
        sa.Column("archive_location", sa.Text(), nullable=True),
        sa.Column("archive_package", sa.String(200), nullable=True),
        sa.Column("archive_seq", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cases")
