"""Sentiment readings and the sentiment metrics derived from them.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sentiment_readings",
        sa.Column("id", _ID, sa.Identity(), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, comment="UTC epoch milliseconds"),
        sa.Column("source", sa.String(32), nullable=False, comment="'' when the file names none"),
        sa.Column("long_share", sa.Double, nullable=False, comment="0..1"),
        sa.Column("short_share", sa.Double, nullable=False, comment="0..1"),
        sa.PrimaryKeyConstraint("id", name="pk_sentiment_readings"),
        sa.UniqueConstraint(
            "symbol", "ts", "source", name="uq_sentiment_readings_symbol_ts_source"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sentiment_readings_symbol_id", "sentiment_readings", ["symbol", "id"])
    op.create_table(
        "sentiment_metrics",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, comment="UTC epoch milliseconds"),
        sa.Column("long_share", sa.Double, nullable=False, comment="0..1"),
        sa.Column("long_share_ema", sa.Double, nullable=False),
        sa.Column(
            "change_window", sa.Double, nullable=False, comment="long_share - first in window"
        ),
        sa.Column("window_min", sa.Double, nullable=False),
        sa.Column("window_max", sa.Double, nullable=False),
        sa.Column("signal", sa.SmallInteger, nullable=False, comment="contrarian: -1, 0 or +1"),
        sa.PrimaryKeyConstraint("symbol", "ts", name="pk_sentiment_metrics"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("sentiment_metrics")
    op.drop_index("ix_sentiment_readings_symbol_id", table_name="sentiment_readings")
    op.drop_table("sentiment_readings")
