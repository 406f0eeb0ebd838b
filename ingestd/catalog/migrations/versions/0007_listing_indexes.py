"""indexes for listings: items in recorded order, flags by kind and time, justifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `items` pages through (recorded_start, sha256); `overdue` scans flags by kind in time
    # order and reads every justification of the items it lists.
    op.create_index("ix_items_recorded", "items", ["recorded_start", "sha256"])
    op.create_index("ix_flags_flag_set_at", "flags", ["flag", "set_at"])
    op.create_index("ix_justifications_item_flag", "justifications", ["item", "flag"])


def downgrade() -> None:
    op.drop_index("ix_justifications_item_flag", table_name="justifications")
    op.drop_index("ix_flags_flag_set_at", table_name="flags")
    op.drop_index("ix_items_recorded", table_name="items")
