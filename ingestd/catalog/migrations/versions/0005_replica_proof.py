"""replica proof: read-back time, location, rewrite, bad versions; target identities

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proven_at", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("location", sa.Text(), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("rewrite", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("bad_versions", sa.Text(), nullable=False,
                                      server_default=""))
    # A copy found bad before this revision still needs a new object, read back.
    op.execute("UPDATE replicas SET rewrite = TRUE WHERE state = 'mismatch'")
    op.create_table(
        "target_identities",
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("target", "location"),
    )


def downgrade() -> None:
    op.drop_table("target_identities")
    with op.batch_alter_table("replicas", schema=None) as batch_op:
        batch_op.drop_column("bad_versions")
        batch_op.drop_column("rewrite")
        batch_op.drop_column("location")
        batch_op.drop_column("proven_at")
