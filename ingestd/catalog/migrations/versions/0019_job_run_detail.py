"""a job run's detail

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 05:40:00

What a run of a daemon job said besides its one-line summary, as a JSON object, for the alerts
to read rather than the summary's words: a replication names there every target it could not
use at all (``unusable``: name to why). Runs recorded before this revision said nothing more:
``{}``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, on SQLite too (3.35 and later drop a column): a batch operation would
# copy the table into a new one, and the new one would lack 0014's trigger on it.


def upgrade() -> None:
    op.add_column("job_runs", sa.Column("detail", sa.Text(), nullable=False,
                                        server_default="{}"))


def downgrade() -> None:
    op.drop_column("job_runs", "detail")
