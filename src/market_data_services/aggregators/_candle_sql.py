"""The SQL the candle builder runs, for SQLite and PostgreSQL.

One-minute candles are aggregated inside the database: the minutes to build are joined
against the ``ticks`` index on (symbol, ts, seq), so each minute is one index range,
read in time order, and only one row per minute comes back to Python. Open and close
are the first and last tick of the range by (ts, seq), found by two index seeks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: SQL for the price of a tick on each basis. ``mid`` is summed here and halved in numpy:
#: halving is exact in binary floating point, so max((b+a)/2) == max(b+a)/2 bit for bit.
PRICE_SQL = {"mid": "{t}.bid + {t}.ask", "bid": "{t}.bid", "ask": "{t}.ask"}
#: What the SQL price is multiplied by to give the price.
PRICE_SCALE = {"mid": 0.5, "bid": 1.0, "ask": 1.0}

_MINUTES_SQLITE = "temp.mds_minutes"
_OHLC = ("open", "high", "low", "close")
_RECORD = np.dtype(
    [
        ("ts_open", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
        ("count", np.int64),
    ]
)


@dataclass(frozen=True, slots=True)
class MinuteCandles:
    """Candles of one symbol and timeframe as columns, sorted by ``ts_open``."""

    ts_open: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    count: IntArray

    @classmethod
    def empty(cls) -> MinuteCandles:
        ints = np.empty(0, dtype=np.int64)
        floats = np.empty(0, dtype=np.float64)
        return cls(
            ts_open=ints,
            open=floats,
            high=floats,
            low=floats,
            close=floats,
            volume=floats,
            count=ints,
        )

    @classmethod
    def from_records(cls, records: Iterable[Sequence[Any]], scale: float = 1.0) -> MinuteCandles:
        """From (ts_open, open, high, low, close, volume, count) tuples, converted in one
        pass in C (``np.fromiter`` into a record array): no Python object per value."""
        table = np.fromiter(records, dtype=_RECORD)
        if not len(table):
            return cls.empty()
        prices = [table[name] * scale if scale != 1.0 else table[name].copy() for name in _OHLC]
        return cls(
            ts_open=table["ts_open"].copy(),
            open=prices[0],
            high=prices[1],
            low=prices[2],
            close=prices[3],
            volume=table["volume"].copy(),
            count=table["count"].copy(),
        )

    @classmethod
    def from_rows(cls, rows: list[Any], scale: float = 1.0) -> MinuteCandles:
        """Rows of (ts_open, open, high, low, close, volume, count)."""
        if not rows:
            return cls.empty()
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.array([r[1:6] for r in rows], dtype=np.float64)
        count = np.fromiter((r[6] for r in rows), dtype=np.int64, count=len(rows))
        if scale != 1.0:
            values[:, :4] *= scale
        return cls(
            ts_open=ts,
            open=values[:, 0].copy(),
            high=values[:, 1].copy(),
            low=values[:, 2].copy(),
            close=values[:, 3].copy(),
            volume=values[:, 4].copy(),
            count=count,
        )

    def __len__(self) -> int:
        return int(self.ts_open.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> MinuteCandles:
        return MinuteCandles(
            ts_open=self.ts_open[mask],
            open=self.open[mask],
            high=self.high[mask],
            low=self.low[mask],
            close=self.close[mask],
            volume=self.volume[mask],
            count=self.count[mask],
        )

    @staticmethod
    def merge(stored: MinuteCandles, fresh: MinuteCandles) -> MinuteCandles:
        """Both sets, ``fresh`` winning where both have a minute; sorted by time."""
        if not len(stored):
            return fresh
        if not len(fresh):
            return stored
        keep = ~np.isin(stored.ts_open, fresh.ts_open)
        parts = [stored.select(keep), fresh]
        ts = np.concatenate([p.ts_open for p in parts])
        order = np.argsort(ts, kind="stable")

        def join(name: str) -> Any:
            return np.concatenate([getattr(p, name) for p in parts])[order]

        return MinuteCandles(
            ts_open=ts[order],
            open=join("open"),
            high=join("high"),
            low=join("low"),
            close=join("close"),
            volume=join("volume"),
            count=join("count"),
        )


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


def aggregate_minutes(
    connection: Connection, symbol: str, minutes: IntArray, basis: str
) -> MinuteCandles:
    """One-minute candles of ``symbol`` for the minute starts in ``minutes`` (sorted,
    unique; a minute without ticks gives no candle)."""
    if len(minutes) == 0:
        return MinuteCandles.empty()
    if connection.dialect.name == "sqlite":
        # A temporary table of the minutes, keyed so the join walks them in order and
        # GROUP BY needs no sort. Temp tables take no lock on the main database.
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_MINUTES_SQLITE.split('.')[1]} "
            f"(m INTEGER PRIMARY KEY)"
        )
        connection.exec_driver_sql(f"DELETE FROM {_MINUTES_SQLITE}")
        first, last = int(minutes[0]), int(minutes[-1])
        if last - first == (len(minutes) - 1) * 60_000:
            # A contiguous run (a backfill step): generated inside SQLite, no binding.
            connection.exec_driver_sql(
                f"WITH RECURSIVE r(m) AS (SELECT ? UNION ALL SELECT m + 60000 FROM r "
                f"WHERE m < ?) INSERT INTO {_MINUTES_SQLITE} (m) SELECT m FROM r",
                (first, last),
            )
        else:
            connection.exec_driver_sql(
                f"INSERT INTO {_MINUTES_SQLITE} (m) VALUES (?)", [(m,) for m in minutes.tolist()]
            )
        sql = _aggregate_sql(basis, f"{_MINUTES_SQLITE} AS mins")
        params: dict[str, Any] = {"symbol": symbol}
    else:
        source = "unnest(CAST(%(minutes)s AS BIGINT[])) AS mins(m)"
        sql = _aggregate_sql(basis, source, "%(symbol)s")
        params = {"symbol": symbol, "minutes": minutes.tolist()}
    # Straight from the driver's cursor into numpy, on this connection and transaction:
    # one row per minute, without building a SQLAlchemy Row for each.
    raw = connection.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(sql, params)
        candles = MinuteCandles.from_records(cursor, PRICE_SCALE[basis])
    finally:
        cursor.close()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"DELETE FROM {_MINUTES_SQLITE}")
    return candles


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
    """Per symbol, the minute starts of ticks with ``after_id < id <= up_to_id``.

    Reads the id range of the primary key: the cost follows the new ticks, not the table.
    """
    if not symbols or up_to_id <= after_id:
        return {}
    # No symbol condition in SQL: given one, a planner may walk the (symbol, ts) index,
    # which is the whole table, instead of the id range. Others' rows are dropped here.
    sql = text(
        "SELECT symbol, ts / 60000 AS m FROM ticks "
        "WHERE id > :after AND id <= :upto GROUP BY symbol, ts / 60000"
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
    value = connection.execute(text("SELECT max(id) FROM ticks")).scalar()
    return 0 if value is None else int(value)


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
