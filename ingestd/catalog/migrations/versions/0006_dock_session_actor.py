"""dock session actor

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Who started the session: the daemon ("ingestd", as every earlier session's entries say)
    # or the person who ran `ingestd ingest`.
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=200), nullable=False,
                                      server_default="ingestd"))


def downgrade() -> None:
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.drop_column("actor")
