"""checkpoints seen: the newest checkpoint known to be on each target

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints_seen",
        sa.Column("station", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("station", "target", name=op.f("pk_checkpoints_seen")),
    )
    # Filled by the next checkpoint or `ledger verify --offsite`: the checkpoints table names
    # no station, so on a shared catalog it cannot say whose checkpoint a row was.


def downgrade() -> None:
    op.drop_table("checkpoints_seen")
