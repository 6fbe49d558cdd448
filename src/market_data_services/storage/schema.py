"""The tables, as SQLAlchemy Core: raw ticks, order books and sentiment readings, the
candles, book metrics and sentiment metrics derived from them, service progress and
settings.

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
- Order-book levels are **packed arrays**: one row per snapshot, each side a ``BLOB``
  (``BYTEA``) of little-endian float64 pairs ``price, size``, best level first. A row of
  one snapshot is written with one insert and read back with one ``numpy.frombuffer``
  per batch, exact to the bit; a row per level would be 40 inserts per 20-level book,
  and JSON would cost a parse per row and round decimals. ``pack_levels`` and
  ``unpack_levels`` in ``market/book.py`` pack and unpack them.
- Sentiment shares are fractions 0..1 (base units), not percentages.

The migrations in ``storage/migrations`` create exactly these tables; a test checks that
the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from market_data_services.market.symbols import SYMBOL_LENGTH
from market_data_services.storage.arrival import declare_arrival

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Length limit of a sentiment reading's source ("ig", a vendor's name).
SOURCE_LENGTH = 32

# On SQLite an INTEGER PRIMARY KEY is the rowid; AUTOINCREMENT keeps ids from ever being
# reused after deletes, which the aggregator's arrival watermark relies on.
_ID = BigInteger().with_variant(Integer(), "sqlite")

#: Raw quotes. ``id`` is the arrival order on SQLite: the aggregator reads what arrived
#: since its watermark as an ``id`` range of the primary key. On PostgreSQL each raw table
#: also has an ``arrival`` column, not declared here (``storage/arrival.py``). A tick's
#: identity is (symbol, ts, seq), where ``seq`` numbers ticks with equal ``ts`` in arrival
#: order, so ingesting the same file twice adds nothing; that unique index also serves
#: reads by time. On PostgreSQL a session takes ids 1,000 at a time (revision 0005), so
#: concurrent loads do not queue for the sequence.
TICK_ID_CACHE = 1000
ticks = Table(
    "ticks",
    metadata,
    Column("id", _ID, Identity(cache=TICK_ID_CACHE), primary_key=True),
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("seq", Integer, nullable=False, comment="order among ticks with equal ts"),
    Column("bid", Double, nullable=False),
    Column("ask", Double, nullable=False),
    Column("volume", Double, nullable=True, comment="NULL when the feed has none"),
    UniqueConstraint("symbol", "ts", "seq"),
    sqlite_autoincrement=True,
)
declare_arrival(ticks, "arrival")

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

#: Order-book (depth of market) snapshots. ``id`` is the arrival order, read by the DOM
#: service as its watermark through the (symbol, id) index. One snapshot per symbol and
#: millisecond; ``bids``/``asks`` are packed float64 (price, size) pairs, best first.
dom_snapshots = Table(
    "dom_snapshots",
    metadata,
    Column("id", _ID, Identity(), primary_key=True),
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("bids", LargeBinary, nullable=False, comment="float64 LE (price, size), best first"),
    Column("asks", LargeBinary, nullable=False, comment="float64 LE (price, size), best first"),
    UniqueConstraint("symbol", "ts"),
    Index(None, "symbol", "id"),
    sqlite_autoincrement=True,
)
declare_arrival(dom_snapshots, "symbol", "arrival")

#: Book metrics, one row per snapshot; the contract other tools read (README "Order book").
dom_metrics = Table(
    "dom_metrics",
    metadata,
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("best_bid", Double, nullable=False),
    Column("best_ask", Double, nullable=False),
    Column("spread", Double, nullable=False, comment="best_ask - best_bid"),
    Column("spread_bps", Double, nullable=False, comment="1e4 * spread / mid"),
    Column("mid", Double, nullable=False),
    Column("microprice", Double, nullable=False),
    Column("imbalance_1", Double, nullable=False),
    Column("imbalance_5", Double, nullable=False),
    Column("depth_bid_10bps", Double, nullable=False),
    Column("depth_ask_10bps", Double, nullable=False),
    Column("ofi", Double, nullable=False, comment="order-flow imbalance since the previous"),
    PrimaryKeyConstraint("symbol", "ts"),
    sqlite_with_rowid=False,
)

#: Retail sentiment readings: the share of clients long and short (fractions 0..1) per
#: symbol, time and source. ``id`` is the arrival order, as for ticks.
sentiment_readings = Table(
    "sentiment_readings",
    metadata,
    Column("id", _ID, Identity(), primary_key=True),
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("source", String(SOURCE_LENGTH), nullable=False, comment="'' when the file names none"),
    Column("long_share", Double, nullable=False, comment="0..1"),
    Column("short_share", Double, nullable=False, comment="0..1"),
    UniqueConstraint("symbol", "ts", "source"),
    Index(None, "symbol", "id"),
    sqlite_autoincrement=True,
)
declare_arrival(sentiment_readings, "symbol", "arrival")

#: Derived sentiment, one row per (symbol, reading time); the contract other tools read.
sentiment_metrics = Table(
    "sentiment_metrics",
    metadata,
    Column("symbol", String(SYMBOL_LENGTH), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="UTC epoch milliseconds"),
    Column("long_share", Double, nullable=False, comment="0..1"),
    Column("long_share_ema", Double, nullable=False),
    Column("change_window", Double, nullable=False, comment="long_share - first in window"),
    Column("window_min", Double, nullable=False),
    Column("window_max", Double, nullable=False),
    Column("signal", SmallInteger, nullable=False, comment="contrarian: -1, 0 or +1"),
    PrimaryKeyConstraint("symbol", "ts"),
    sqlite_with_rowid=False,
)

__all__ = [
    "SOURCE_LENGTH",
    "SYMBOL_LENGTH",
    "candles",
    "dom_metrics",
    "dom_snapshots",
    "metadata",
    "sentiment_metrics",
    "sentiment_readings",
    "service_progress",
    "settings",
    "ticks",
]
