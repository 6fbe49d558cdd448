"""The tables, as SQLAlchemy Core: raw ticks, candles, service progress and settings.

Types, and why:

- Times are UTC epoch **milliseconds** in ``BIGINT``. An integer is exact, sorts and
  compares cheaply, buckets with integer arithmetic, means the same on SQLite and
  PostgreSQL (SQLite has no timestamp type), and never meets a time zone. Millisecond
  is the resolution of the feeds we read.
- Prices and volumes are **double precision** (IEEE-754 binary64, ``REAL`` in SQLite).
  The feeds publish at most 5-6 significant decimals, which a double holds exactly
  after rounding; candles only pick (open/high/low/close) and sum, so no rounding is
  added beyond the mid price's one division; numpy, pandas and both databases compute
  the same bits, so results compare exactly. NUMERIC would be slower and SQLite would
  store it as a double anyway.
- Tables keyed by what they describe (candles, progress, settings) are ``WITHOUT ROWID``
  on SQLite: stored in key order, so an upsert or a range read touches one B-tree.
- Counts (``tick_count``) are ``BIGINT`` like the times, so no column overflows first.

The migrations in ``storage/migrations`` create exactly these tables; a test checks that
the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Identity,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Length limit of a symbol ("EUR/USD", "BTCUSDT", "XAU/USD.fx").
SYMBOL_LENGTH = 32

# On SQLite an INTEGER PRIMARY KEY is the rowid; AUTOINCREMENT keeps ids from ever being
# reused after deletes, which the aggregator's arrival watermark relies on.
_ID = BigInteger().with_variant(Integer(), "sqlite")

#: Raw quotes. ``id`` is the arrival order: the aggregator reads what arrived since its
#: watermark as an ``id`` range of the primary key. A tick's identity is (symbol, ts, seq),
#: where ``seq`` numbers ticks with equal ``ts`` in arrival order, so ingesting the same
#: file twice adds nothing; that unique index also serves reads by time.
ticks = Table(
    "ticks",
    metadata,
    Column("id", _ID, Identity(), primary_key=True),
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("seq", Integer, nullable=False, comment="order among ticks with equal ts"),
    Column("bid", Double, nullable=False),
    Column("ask", Double, nullable=False),
    Column("volume", Double, nullable=True, comment="NULL when the feed has none"),
    UniqueConstraint("symbol", "ts", "seq"),
    sqlite_autoincrement=True,
)

#: OHLC candles; the contract other tools read (see README "Storage").
candles = Table(
    "candles",
    metadata,
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("timeframe", String(8), nullable=False, comment="1m 5m 15m 30m 1h 4h 1d"),
    Column("ts_open", BigInteger, nullable=False, comment="bucket start, UTC epoch ms"),
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False, comment="sum of volumes; tick count without"),
    Column("tick_count", BigInteger, nullable=False),
    PrimaryKeyConstraint("symbol", "timeframe", "ts_open"),
    sqlite_with_rowid=False,
)

#: Where each service got to, per symbol: watermarks and pending ranges, so a restart
#: resumes. ``symbol`` is '' for a service-wide entry.
service_progress = Table(
    "service_progress",
    metadata,
    Column("service", String(64), nullable=False),
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False, comment="UTC epoch ms"),
    PrimaryKeyConstraint("service", "symbol", "key"),
    sqlite_with_rowid=False,
)

#: Settings that derived data depends on, e.g. ``candles.price_basis`` and
#: ``candles.day_start``: a run with different ones must not mix its rows with these.
settings = Table(
    "settings",
    metadata,
    Column("key", String(128), nullable=False),
    Column("value", String(1024), nullable=False),
    Column("updated_at", BigInteger, nullable=False, comment="UTC epoch ms"),
    PrimaryKeyConstraint("key"),
)

__all__ = ["SYMBOL_LENGTH", "candles", "metadata", "service_progress", "settings", "ticks"]
