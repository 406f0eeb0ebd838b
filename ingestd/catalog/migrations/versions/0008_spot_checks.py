"""spot checks: sampled items re-hashed and decoded, and supervisors' reviews of them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spot_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("officer", sa.String(length=200), nullable=False),
        sa.Column("checked_at", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.String(length=32), nullable=False),
        sa.Column("fixity", sa.Text(), nullable=False),
        sa.Column("decode", sa.Text(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["item"], ["items.sha256"],
                                name=op.f("fk_spot_checks_item_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spot_checks")),
    )
    op.create_index(op.f("ix_spot_checks_item"), "spot_checks", ["item"])
    op.create_index(op.f("ix_spot_checks_officer"), "spot_checks", ["officer"])
    op.create_table(
        "spot_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["check_id"], ["spot_checks.id"],
                                name=op.f("fk_spot_reviews_check_id_spot_checks")),
        sa.ForeignKeyConstraint(["item"], ["items.sha256"],
                                name=op.f("fk_spot_reviews_item_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spot_reviews")),
    )
    op.create_index(op.f("ix_spot_reviews_check_id"), "spot_reviews", ["check_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_spot_reviews_check_id"), table_name="spot_reviews")
    op.drop_table("spot_reviews")
    op.drop_index(op.f("ix_spot_checks_officer"), table_name="spot_checks")
    op.drop_index(op.f("ix_spot_checks_item"), table_name="spot_checks")
    op.drop_table("spot_checks")
