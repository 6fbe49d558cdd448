"""Order-book snapshots and the book metrics derived from them.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_METRICS = (
    ("best_bid", None),
    ("best_ask", None),
    ("spread", "best_ask - best_bid"),
    ("spread_bps", "1e4 * spread / mid"),
    ("mid", None),
    ("microprice", None),
    ("imbalance_1", None),
    ("imbalance_5", None),
    ("depth_bid_10bps", None),
    ("depth_ask_10bps", None),
    ("ofi", "order-flow imbalance since the previous"),
)


def upgrade() -> None:
    op.create_table(
        "dom_snapshots",
        sa.Column("id", _ID, sa.Identity(), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, comment="UTC epoch milliseconds"),
        sa.Column(
            "bids", sa.LargeBinary, nullable=False, comment="float64 LE (price, size), best first"
        ),
        sa.Column(
            "asks", sa.LargeBinary, nullable=False, comment="float64 LE (price, size), best first"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dom_snapshots"),
        sa.UniqueConstraint("symbol", "ts", name="uq_dom_snapshots_symbol_ts"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_dom_snapshots_symbol_id", "dom_snapshots", ["symbol", "id"])
    op.create_table(
        "dom_metrics",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, comment="UTC epoch milliseconds"),
        *(
            sa.Column(name, sa.Double, nullable=False, comment=comment)
            for name, comment in _METRICS
        ),
        sa.PrimaryKeyConstraint("symbol", "ts", name="pk_dom_metrics"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("dom_metrics")
    op.drop_index("ix_dom_snapshots_symbol_id", table_name="dom_snapshots")
    op.drop_table("dom_snapshots")
