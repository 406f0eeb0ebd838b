"""dock session skipped files

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:05:00.000000

What a dock session's walk saw and did not take: how many, and how many of each kind (JSON).
Sessions recorded before this revision took no account of them: zero and ``{}``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("files_skipped", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("skipped", sa.Text(), nullable=False,
                                      server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.drop_column("skipped")
        batch_op.drop_column("files_skipped")
