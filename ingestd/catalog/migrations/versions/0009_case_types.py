"""labels: the case type a label chose ([retention.case_types])

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Labels made before case types chose none: NULL, as their entries name none.
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("case_type", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("case_type")
