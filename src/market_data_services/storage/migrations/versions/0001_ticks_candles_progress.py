"""Ticks, candles, service progress and settings.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ticks",
        sa.Column("id", _ID, sa.Identity(), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False, comment="UTC epoch milliseconds"),
        sa.Column("seq", sa.Integer, nullable=False, comment="order among ticks with equal ts"),
        sa.Column("bid", sa.Double, nullable=False),
        sa.Column("ask", sa.Double, nullable=False),
        sa.Column("volume", sa.Double, nullable=True, comment="NULL when the feed has none"),
        sa.PrimaryKeyConstraint("id", name="pk_ticks"),
        sa.UniqueConstraint("symbol", "ts", "seq", name="uq_ticks_symbol_ts_seq"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "candles",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False, comment="1m 5m 15m 30m 1h 4h 1d"),
        sa.Column("ts_open", sa.BigInteger, nullable=False, comment="bucket start, UTC epoch ms"),
        sa.Column("open", sa.Double, nullable=False),
        sa.Column("high", sa.Double, nullable=False),
        sa.Column("low", sa.Double, nullable=False),
        sa.Column("close", sa.Double, nullable=False),
        sa.Column(
            "volume", sa.Double, nullable=False, comment="sum of volumes; tick count without"
        ),
        sa.Column("tick_count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts_open", name="pk_candles"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "service_progress",
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False, comment="UTC epoch ms"),
        sa.PrimaryKeyConstraint("service", "symbol", "key", name="pk_service_progress"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False, comment="UTC epoch ms"),
        sa.PrimaryKeyConstraint("key", name="pk_settings"),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("service_progress")
    op.drop_table("candles")
    op.drop_table("ticks")
