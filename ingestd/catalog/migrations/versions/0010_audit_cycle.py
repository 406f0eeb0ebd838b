"""audit cycle: each item's last intact re-hash (``items.audited_at``), from its entries

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audited_at", sa.String(length=32), nullable=True))
    # The time each item was last re-hashed intact, as its latest such `audited` entry says
    # (the entries are in time order: the ledger never dates one before the one it follows).
    conn = op.get_bind()
    ledger = sa.table("ledger", sa.column("seq"), sa.column("kind"), sa.column("item"),
                      sa.column("at"), sa.column("data"))
    items = sa.table("items", sa.column("sha256"), sa.column("audited_at"))
    last: dict[str, str] = {}
    rows = conn.execute(sa.select(ledger.c.item, ledger.c.at, ledger.c.data)
                        .where(ledger.c.kind == "audited", ledger.c.item.is_not(None))
                        .order_by(ledger.c.seq))
    for row in rows:
        try:
            data = json.loads(row.data)
        except (TypeError, ValueError):
            continue  # unreadable: `ledger verify` reports the entry
        if isinstance(data, dict) and data.get("fixity") == "ok":
            last[row.item] = row.at
    for sha, at in last.items():
        conn.execute(sa.update(items).where(items.c.sha256 == sha).values(audited_at=at))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("audited_at")
