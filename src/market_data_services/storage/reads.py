"""The services' reads, for SQLite and PostgreSQL: where the two differ, it is here.

Candles: one-minute candles are aggregated inside the database: the minutes to build are
joined against the ``ticks`` index on (symbol, ts, seq), so each minute is one index
range, read in time order, and only one row per minute comes back to Python. Open and
close are the first and last tick of the range by (ts, seq), found by two index seeks.
A contiguous run of minutes (a backfill step) is first narrowed to the minutes that have
ticks, by a skip scan of the index (one seek per such minute), so a sparse history costs
per tick, not per minute spanned. PostgreSQL aggregates in one pass instead: open and
close as the smallest and largest (ts, seq, price) array, no seek per minute.

Also: the symbols stored in each raw table, for backfills over the whole database, and
``fetch_tuples``, which reads plain tuples through the driver's own cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Table, select, text

from market_data_services.market.candles import MinuteCandles
from market_data_services.storage.arrival import arrival_horizon, position_name
from market_data_services.storage.schema import ticks

IntArray = npt.NDArray[np.int64]

#: SQL for the price of a tick on each basis. ``mid`` is summed here and halved in numpy:
#: halving is exact in binary floating point, so max((b+a)/2) == max(b+a)/2 bit for bit.
PRICE_SQL = {"mid": "{t}.bid + {t}.ask", "bid": "{t}.bid", "ask": "{t}.ask"}
#: What the SQL price is multiplied by to give the price.
PRICE_SCALE = {"mid": 0.5, "bid": 1.0, "ask": 1.0}

_MINUTES_SQLITE = "temp.mds_minutes"
_CANDLES_SQLITE = "temp.mds_minute_candles"


def _aggregate_sql(basis: str, minutes_source: str, symbol: str = ":symbol") -> str:
    """The one-minute aggregate; ``symbol`` is the placeholder in the driver's style."""
    price = PRICE_SQL[basis]
    return f"""
SELECT mins.m,
  (SELECT {price.format(t="o")} FROM ticks AS o
     WHERE o.symbol = {symbol} AND o.ts >= mins.m AND o.ts < mins.m + 60000
     ORDER BY o.ts, o.seq LIMIT 1),
  max({price.format(t="t")}),
  min({price.format(t="t")}),
  (SELECT {price.format(t="c")} FROM ticks AS c
     WHERE c.symbol = {symbol} AND c.ts >= mins.m AND c.ts < mins.m + 60000
     ORDER BY c.ts DESC, c.seq DESC LIMIT 1),
  sum(coalesce(t.volume, 1)),
  count(*)
FROM {minutes_source}
JOIN ticks AS t ON t.symbol = {symbol} AND t.ts >= mins.m AND t.ts < mins.m + 60000
GROUP BY mins.m
ORDER BY mins.m
"""


def _aggregate_sql_postgresql(basis: str, *, contiguous: bool) -> str:
    """The one-minute aggregate on PostgreSQL, in one pass over the ticks: open and close
    are the price of the smallest and the largest ``(ts, seq, price)``, compared as float8
    arrays (exact for times below 2**53 ms). A contiguous run of minutes is one index
    range grouped by minute (times are not negative, so ``/`` floors), so an empty minute
    costs nothing; explicit minutes (the live path's dirty ones) are joined against the
    index."""
    price = PRICE_SQL[basis].format(t="t")
    order = f"ARRAY[t.ts::float8, t.seq::float8, {price}]"
    columns = (
        f"(min({order}))[3], max({price}), min({price}), (max({order}))[3], "
        f"sum(coalesce(t.volume, 1)), count(*)"
    )
    if contiguous:
        return (
            f"SELECT t.ts / 60000 * 60000 AS m, {columns} FROM ticks AS t "
            f"WHERE t.symbol = %(symbol)s AND t.ts >= %(low)s AND t.ts < %(high)s "
            f"GROUP BY 1 ORDER BY 1"
        )
    return (
        f"SELECT mins.m, {columns} FROM unnest(CAST(%(minutes)s AS BIGINT[])) AS mins(m) "
        f"JOIN ticks AS t ON t.symbol = %(symbol)s AND t.ts >= mins.m "
        f"AND t.ts < mins.m + 60000 GROUP BY mins.m ORDER BY mins.m"
    )


def _skip_scan_sql(symbol: str = ":symbol", low: str = ":low", high: str = ":high") -> str:
    """The minute starts in [low, high) that hold ticks of ``symbol``, in order: a
    recursive query that seeks the first tick at or after the end of the last minute
    found. Placeholders in the driver's style. ``ts / 60000 * 60000`` is the minute's start
    because times are not negative (ingest rejects times before 1970)."""
    first = (
        "SELECT t.ts / 60000 * 60000 FROM ticks AS t WHERE t.symbol = {symbol} "
        "AND t.ts >= {start} AND t.ts < {high} ORDER BY t.ts LIMIT 1"
    )
    return (
        f"WITH RECURSIVE found(m) AS ("
        f"SELECT ({first.format(symbol=symbol, start=low, high=high)}) "
        f"UNION ALL SELECT ({first.format(symbol=symbol, start='found.m + 60000', high=high)}) "
        f"FROM found WHERE found.m IS NOT NULL) "
        f"SELECT m FROM found WHERE m IS NOT NULL"
    )


#: One-minute candles aggregated on a connection, waiting to be read back (call it once).
MinuteAggregate = Callable[[], MinuteCandles]


def aggregate_minutes(
    connection: Connection, symbol: str, minutes: IntArray, basis: str
) -> MinuteCandles:
    """One-minute candles of ``symbol`` for the minute starts in ``minutes`` (sorted,
    unique; a minute without ticks gives no candle)."""
    return start_minute_aggregate(connection, symbol, minutes, basis, ahead=False)()


def start_minute_aggregate(
    connection: Connection, symbol: str, minutes: IntArray, basis: str, *, ahead: bool = True
) -> MinuteAggregate:
    """``aggregate_minutes`` in two parts: the database's work now, during which the
    driver holds no GIL, and the reading back when the returned function is called (on
    this connection and transaction, from any thread), which takes the GIL for every row.

    Split so that a worker thread runs the first while another thread uses the GIL, and
    the thread that uses the candles reads them: a worker reading them itself would wait
    for the GIL at every row while the other thread computes. ``ahead=False``: the
    reading follows at once on the same thread, so on SQLite the aggregate is read as it
    runs instead of kept in a temporary table first."""
    if len(minutes) == 0:
        return MinuteCandles.empty
    first, last = int(minutes[0]), int(minutes[-1])
    contiguous = last - first == (len(minutes) - 1) * 60_000
    if connection.dialect.name == "sqlite":
        if contiguous and _is_sparse(connection, symbol, first, last + 60_000):

            def read_sparse() -> MinuteCandles:
                candles = _sparse_minutes_sqlite(connection, symbol, first, last + 60_000, basis)
                if candles is None:  # a tick has a volume: SQLite's sum() adds them
                    return _aggregate_sqlite(
                        connection, symbol, minutes, basis, True, ahead=False
                    )()
                return candles

            return read_sparse
        return _aggregate_sqlite(connection, symbol, minutes, basis, contiguous, ahead=ahead)
    if contiguous:
        params: dict[str, Any] = {"symbol": symbol, "low": first, "high": last + 60_000}
    else:
        params = {"symbol": symbol, "minutes": minutes.tolist()}
    # The planner's estimate for a million-tick range is high enough to switch on JIT
    # compilation, which then costs about a second per query, more than it saves. Off
    # for this transaction only.
    connection.exec_driver_sql("SET LOCAL jit = off")
    # The driver's own cursor: the server aggregates and the rows arrive now; numpy
    # takes them when read, without a SQLAlchemy Row for each.
    cursor = _driver(connection).cursor()
    try:
        cursor.execute(_aggregate_sql_postgresql(basis, contiguous=contiguous), params)
    except BaseException:
        cursor.close()
        raise

    def read() -> MinuteCandles:
        try:
            return MinuteCandles.from_records(cursor, PRICE_SCALE[basis])
        finally:
            cursor.close()

    return read


def _aggregate_sqlite(
    connection: Connection,
    symbol: str,
    minutes: IntArray,
    basis: str,
    contiguous: bool,
    *,
    ahead: bool,
) -> MinuteAggregate:
    """The aggregate over a temporary table of the minutes. ``ahead``: run now into a
    second temporary table, in one statement (no GIL while it runs), which the returned
    function reads; else the returned function runs it. Temporary tables take no lock on
    the main database."""
    # The minutes keyed, so the join walks them in order and GROUP BY needs no sort.
    connection.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {_MINUTES_SQLITE.split('.')[1]} (m INTEGER PRIMARY KEY)"
    )
    connection.exec_driver_sql(f"DELETE FROM {_MINUTES_SQLITE}")
    if contiguous:
        # A contiguous run (a backfill step): its minutes with ticks, found inside
        # SQLite, no binding and no row for an empty minute.
        first, last = int(minutes[0]), int(minutes[-1])
        connection.exec_driver_sql(
            f"INSERT INTO {_MINUTES_SQLITE} (m) {_skip_scan_sql()}",
            {"symbol": symbol, "low": first, "high": last + 60_000},
        )
    else:
        connection.exec_driver_sql(
            f"INSERT INTO {_MINUTES_SQLITE} (m) VALUES (?)", [(m,) for m in minutes.tolist()]
        )
    aggregate = _aggregate_sql(basis, f"{_MINUTES_SQLITE} AS mins")
    if ahead:
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_CANDLES_SQLITE.split('.')[1]} (m INTEGER "
            f"PRIMARY KEY, open REAL, high REAL, low REAL, close REAL, volume REAL, count INTEGER)"
        )
        connection.exec_driver_sql(f"DELETE FROM {_CANDLES_SQLITE}")
        connection.exec_driver_sql(f"INSERT INTO {_CANDLES_SQLITE} {aggregate}", {"symbol": symbol})

    def read() -> MinuteCandles:
        cursor = _driver(connection).cursor()
        try:
            if ahead:
                cursor.execute(f"SELECT * FROM {_CANDLES_SQLITE} ORDER BY m")
            else:
                cursor.execute(aggregate, {"symbol": symbol})
            candles = MinuteCandles.from_records(cursor, PRICE_SCALE[basis])
        finally:
            cursor.close()
        connection.exec_driver_sql(f"DELETE FROM {_MINUTES_SQLITE}")
        if ahead:
            connection.exec_driver_sql(f"DELETE FROM {_CANDLES_SQLITE}")
        return candles

    return read


def _driver(connection: Connection) -> Any:
    raw = connection.connection.driver_connection
    assert raw is not None
    return raw


def _is_sparse(connection: Connection, symbol: str, low: int, high: int) -> bool:
    """Fewer ticks of ``symbol`` in ``[low, high)`` than minutes: an index-only count that
    stops at the number of minutes, so a dense range costs no more than a sparse one."""
    minutes = (high - low) // 60_000
    tick_count: int = connection.exec_driver_sql(
        "SELECT count(*) FROM (SELECT 1 FROM ticks WHERE symbol = ? AND ts >= ? AND ts < ? "
        "LIMIT ?)",
        (symbol, low, high, minutes),
    ).scalar_one()
    return tick_count < minutes


def _sparse_minutes_sqlite(
    connection: Connection, symbol: str, low: int, high: int, basis: str
) -> MinuteCandles | None:
    """The one-minute candles of a sparse ``[low, high)`` from the ticks themselves, or
    None when a tick has a volume (the aggregate does it then).

    With a tick or less a minute, the aggregate's work per minute (a seek to find it,
    one into the range, two for open and close) costs more than reading each tick once
    in (ts, seq) order and reducing in numpy. Volumes are left to SQLite, whose ``sum()``
    adds in an order numpy's ``reduceat`` does not keep; without them the volume is the
    tick count, exact either way."""
    price = PRICE_SQL[basis].format(t="t")
    cursor = _driver(connection).cursor()
    try:
        cursor.execute(
            f"SELECT t.ts, {price}, t.volume IS NOT NULL FROM ticks AS t "
            f"WHERE t.symbol = ? AND t.ts >= ? AND t.ts < ? ORDER BY t.ts, t.seq",
            (symbol, low, high),
        )
        table = np.fromiter(cursor, dtype=_TICK_RECORD)
    finally:
        cursor.close()
    if table["has_volume"].any():
        return None
    return MinuteCandles.from_ticks(table["ts"], table["price"], PRICE_SCALE[basis])


#: A tick as ``_sparse_minutes_sqlite`` reads it.
_TICK_RECORD = np.dtype([("ts", np.int64), ("price", np.float64), ("has_volume", np.bool_)])


def read_minute_candles(
    connection: Connection, symbol: str, start_ms: int, end_ms: int
) -> MinuteCandles:
    """Stored one-minute candles of ``symbol`` with ``start_ms <= ts_open < end_ms``."""
    rows = connection.execute(
        text(
            "SELECT ts_open, open, high, low, close, volume, tick_count FROM candles "
            "WHERE symbol = :symbol AND timeframe = '1m' "
            "AND ts_open >= :start AND ts_open < :end ORDER BY ts_open"
        ),
        {"symbol": symbol, "start": start_ms, "end": end_ms},
    ).all()
    return MinuteCandles.from_rows(list(rows))


def new_tick_minutes(
    connection: Connection, symbols: list[str], after_id: int, up_to_id: int
) -> dict[str, IntArray]:
    """Per symbol, the minute starts of ticks with ``after_id < position <= up_to_id``,
    where the position is the arrival order of ``storage/arrival.py`` (the id on SQLite).

    Reads a range of the position's index: the cost follows the new ticks, not the table.
    """
    if not symbols or up_to_id <= after_id:
        return {}
    # No symbol condition in SQL: given one, a planner may walk the (symbol, ts) index,
    # which is the whole table, instead of the position range. Others' rows are dropped here.
    position = position_name(connection)
    sql = text(
        "SELECT symbol, ts / 60000 AS m FROM ticks "
        f"WHERE {position} > :after AND {position} <= :upto GROUP BY symbol, ts / 60000"
    )
    wanted = set(symbols)
    found: dict[str, list[int]] = {}
    for symbol, minute in connection.execute(sql, {"after": after_id, "upto": up_to_id}):
        if symbol in wanted:
            found.setdefault(symbol, []).append(int(minute) * 60_000)
    return {s: np.unique(np.array(m, dtype=np.int64)) for s, m in found.items()}


def tick_time_range(connection: Connection, symbol: str) -> tuple[int, int] | None:
    """The first and last tick time of ``symbol`` (two index seeks), or None."""
    first = connection.execute(
        text("SELECT min(ts) FROM ticks WHERE symbol = :s"), {"s": symbol}
    ).scalar()
    if first is None:
        return None
    last = connection.execute(
        text("SELECT max(ts) FROM ticks WHERE symbol = :s"), {"s": symbol}
    ).scalar()
    return int(first), int(first if last is None else last)


def max_tick_id(connection: Connection) -> int:
    """The arrival position up to which ticks are settled (``arrival_horizon``): the
    newest id on SQLite, just below the oldest transaction in flight on PostgreSQL."""
    return arrival_horizon(connection, ticks)


def stored_symbols(connection: Connection) -> list[str]:
    """Every symbol in ``ticks``, by a skip scan of the index (one seek per symbol)."""
    sql = text(
        "WITH RECURSIVE s(symbol) AS ("
        " SELECT min(symbol) FROM ticks"
        " UNION ALL"
        " SELECT (SELECT min(t.symbol) FROM ticks AS t WHERE t.symbol > s.symbol)"
        " FROM s WHERE s.symbol IS NOT NULL"
        ") SELECT symbol FROM s WHERE symbol IS NOT NULL"
    )
    return [row[0] for row in connection.execute(sql)]


def stored_symbols_of(connection: Connection, table: Table) -> list[str]:
    """Every symbol with rows in ``table`` (the order-book and sentiment tables), sorted."""
    rows = connection.execute(select(table.c.symbol).distinct().order_by(table.c.symbol))
    return [row[0] for row in rows]


def fetch_tuples(
    connection: Connection, sql: str, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders) through the driver's own cursor, in the
    caller's transaction.

    Plain tuples instead of SQLAlchemy rows, and on PostgreSQL the binary result format,
    so a ``bytea`` column arrives as its bytes instead of hex text to decode.
    """
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        with raw.cursor(binary=True) as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows
    cursor = raw.cursor()
    try:
        cursor.execute(sql, params)
        result: list[tuple[Any, ...]] = cursor.fetchall()
        return result
    finally:
        cursor.close()


class JoinedBooks(NamedTuple):
    """Order-book snapshots as columns: arrival positions and times, and each side's
    blobs joined end to end with their lengths in bytes."""

    positions: npt.NDArray[np.int64]
    stamps: npt.NDArray[np.int64]
    bid_lengths: npt.NDArray[np.int64]
    ask_lengths: npt.NDArray[np.int64]
    bids: bytes
    asks: bytes


def read_joined_books(
    connection: Connection, symbol: str, *, from_ts: int, up_to_position: int, limit: int
) -> JoinedBooks:
    """The first ``limit`` snapshots of ``symbol`` in ``dom_snapshots`` at or after
    ``from_ts`` with an arrival position up to ``up_to_position``, in time order.

    On SQLite one row comes back, each column aggregated into one string (the numbers)
    or one blob (the sides), so the driver builds a few objects per batch instead of five
    per book. The aggregates take the rows in the order of the subquery that sorts them
    by time (SQLite has no ``ORDER BY`` in aggregates before 3.44; this is its usual
    behaviour, not a documented guarantee), so that order is checked; all the aggregates
    of a query see the rows in one order, so the columns agree with each other.
    On PostgreSQL the rows come in binary and are joined here: its ``string_agg`` of the
    sides took 15 to 30 ms a batch of 5,000 on the server, more than the rows' transfer.
    """
    params = (symbol, from_ts, up_to_position, limit)
    position = position_name(connection)
    if connection.dialect.name == "postgresql":
        return _joined_rows(fetch_tuples(connection, _BOOKS_SQL.format(position=position), params))
    count, positions, stamps, bid_lengths, ask_lengths, bids, asks = fetch_tuples(
        connection, _JOINED_BOOKS_SQL.format(position=position), params
    )[0]
    if not count:
        return _joined_rows([])
    stamp_array = _integers(stamps, count)
    if count > 1 and not bool((np.diff(stamp_array) > 0).all()):
        raise RuntimeError(f"dom_snapshots of {symbol} did not come back in time order")
    return JoinedBooks(
        _integers(positions, count),
        stamp_array,
        _integers(bid_lengths, count),
        _integers(ask_lengths, count),
        bytes(bids),
        bytes(asks),
    )


def _joined_rows(rows: list[tuple[Any, ...]]) -> JoinedBooks:
    """``JoinedBooks`` of (position, ts, bids, asks) rows."""
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return JoinedBooks(empty, empty, empty, empty, b"", b"")
    positions, stamps, bids, asks = zip(*rows, strict=True)
    return JoinedBooks(
        np.array(positions, dtype=np.int64),
        np.array(stamps, dtype=np.int64),
        np.fromiter(map(len, bids), dtype=np.int64, count=len(bids)),
        np.fromiter(map(len, asks), dtype=np.int64, count=len(asks)),
        b"".join(bids),
        b"".join(asks),
    )


def _integers(joined: str, count: int) -> npt.NDArray[np.int64]:
    """The ``count`` comma-separated integers of a string aggregate (parsed by numpy's
    text reader: a seventh of the time of ``split`` and a conversion per string)."""
    values = np.fromstring(joined, dtype=np.int64, sep=",")
    if values.shape[0] != count:
        raise RuntimeError(f"expected {count} integers in a string aggregate, read {len(values)}")
    return values


# Rows are read in time order through the (symbol, ts) index; ``{position} <= ?`` keeps
# rows that arrive during a pass for the next one. ``{position}``: storage/arrival.py.
_BOOKS_SQL = (
    "SELECT {position} AS arrival_position, ts, bids, asks FROM dom_snapshots "
    "WHERE symbol = ? AND ts >= ? AND {position} <= ? ORDER BY ts LIMIT ?"
)
#: SQLite: one batch as one row (see ``read_joined_books``).
_JOINED_BOOKS_SQL = (
    "SELECT count(*), group_concat(arrival_position), group_concat(ts),"
    " group_concat(length(bids)), group_concat(length(asks)),"
    " CAST(group_concat(bids, '') AS BLOB), CAST(group_concat(asks, '') AS BLOB) "
    f"FROM ({_BOOKS_SQL})"
)


__all__ = [
    "PRICE_SCALE",
    "PRICE_SQL",
    "JoinedBooks",
    "MinuteAggregate",
    "aggregate_minutes",
    "fetch_tuples",
    "max_tick_id",
    "new_tick_minutes",
    "read_joined_books",
    "read_minute_candles",
    "start_minute_aggregate",
    "stored_symbols",
    "stored_symbols_of",
    "tick_time_range",
]
