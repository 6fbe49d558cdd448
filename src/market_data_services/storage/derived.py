"""Reading derived data back: candles, book metrics and sentiment, in pages of rows.

The one reader under the Python API (``read_candles`` and friends), ``mds export`` and
the HTTP API. Rows come in pages by keyset (``WHERE ts > last ORDER BY ts LIMIT n``):
each page is one short statement walking the table's primary key, so memory stays
bounded whatever the range, and every statement is bounded by the read's timeout.

The candle service writes a bucket once it has closed. The buckets it has not written
yet (the one the newest tick falls in, and the one before while the service catches up)
are built here from the ticks, as the service would, and marked ``complete = False``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, text
from sqlalchemy.engine import Engine

from market_data_services.market.candles import MinuteCandles, roll_up
from market_data_services.market.timeframes import MINUTE_MS, TIMEFRAMES, Bucketing
from market_data_services.storage.progress import read_settings
from market_data_services.storage.reads import (
    aggregate_minutes,
    fetch_tuples,
    read_minute_candles,
)
from market_data_services.storage.schema import candles, dom_metrics, sentiment_metrics
from market_data_services.timeutil import parse_day_start, parse_timestamp_ms

#: The candle service's settings (written by it; the keys are its own).
_DAY_START_KEY = "candles.day_start"
_PRICE_BASIS_KEY = "candles.price_basis"

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Kind:
    """One kind of derived data: its table, time column and value columns."""

    name: str
    table: Table
    time_column: str
    columns: tuple[str, ...]  # the row after the time column, in order
    #: Candles only: rows are per (symbol, timeframe).
    has_timeframe: bool = False


CANDLES = Kind(
    "candles",
    candles,
    "ts_open",
    ("open", "high", "low", "close", "volume", "tick_count", "complete"),
    has_timeframe=True,
)
BOOK = Kind(
    "book",
    dom_metrics,
    "ts",
    tuple(c.name for c in dom_metrics.columns if c.name not in ("symbol", "ts")),
)
SENTIMENT = Kind(
    "sentiment",
    sentiment_metrics,
    "ts",
    tuple(c.name for c in sentiment_metrics.columns if c.name not in ("symbol", "ts")),
)
#: Every kind by the name ``mds export`` and the HTTP API use.
KINDS = {kind.name: kind for kind in (CANDLES, BOOK, SENTIMENT)}


class UnknownSymbolError(LookupError):
    """The symbol has no stored data of the kind asked for."""


def to_epoch_ms(value: datetime | date | str | int, name: str = "time") -> int:
    """UTC epoch ms of a datetime (naive means UTC), a date (its UTC midnight), an
    ISO-8601 string (no offset: UTC) or epoch milliseconds (an integer, or its digits)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return parse_timestamp_ms(moment.isoformat())
    if isinstance(value, date):
        return parse_timestamp_ms(value.isoformat())
    if isinstance(value, str):
        try:
            return parse_timestamp_ms(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise ValueError(
        f"{name}: expected a datetime, an ISO-8601 string or epoch milliseconds, "
        f"got {type(value).__name__} {value!r}"
    )


def check_timeframe(timeframe: str) -> str:
    if timeframe not in TIMEFRAMES:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; valid timeframes: {', '.join(TIMEFRAMES)}"
        )
    return timeframe


@contextlib.contextmanager
def read_transaction(engine: Engine, *, timeout_seconds: float | None) -> Iterator[Connection]:
    """A read-only transaction whose statements each end within ``timeout_seconds``.

    PostgreSQL: ``SET LOCAL statement_timeout`` (the engine's client-side deadline still
    covers a server that does not answer). SQLite: a progress handler interrupts a
    statement past the deadline. Either way the statement raises SQLAlchemy's
    ``OperationalError``.
    """
    with engine.connect() as connection, connection.begin():
        if timeout_seconds is None:
            yield connection
            return
        if connection.dialect.name == "postgresql":
            ms = max(1, int(timeout_seconds * 1000))
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
            yield connection
            return
        raw: Any = connection.connection.driver_connection
        deadline = time.monotonic() + timeout_seconds
        # Called every 10,000 virtual machine steps; a true answer interrupts.
        raw.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            yield connection
        finally:
            raw.set_progress_handler(None, 0)


def has_symbol(connection: Connection, kind: Kind, symbol: str) -> bool:
    """Whether ``symbol`` has rows of ``kind`` (for candles: candles or ticks)."""
    tables = [kind.table.name, *(["ticks"] if kind is CANDLES else [])]
    for table in tables:
        sql = text(f"SELECT 1 FROM {table} WHERE symbol = :s LIMIT 1")
        if connection.execute(sql, {"s": symbol}).first() is not None:
            return True
    return False


def stored_symbols_by_kind(connection: Connection) -> dict[str, list[str]]:
    """The symbols with rows of each kind, sorted; candles count symbols with ticks too,
    whose candle is still open."""
    found = {kind.name: _distinct_symbols(connection, kind.table.name) for kind in KINDS.values()}
    found["candles"] = sorted(set(found["candles"]) | set(_distinct_symbols(connection, "ticks")))
    return found


def _distinct_symbols(connection: Connection, table: str) -> list[str]:
    # A skip scan of the index that starts with symbol: one seek per symbol, not a scan.
    sql = text(
        "WITH RECURSIVE s(symbol) AS ("
        f" SELECT min(symbol) FROM {table}"
        " UNION ALL"
        f" SELECT (SELECT min(t.symbol) FROM {table} AS t WHERE t.symbol > s.symbol)"
        " FROM s WHERE s.symbol IS NOT NULL"
        ") SELECT symbol FROM s WHERE symbol IS NOT NULL"
    )
    return [row[0] for row in connection.execute(sql)]


def read_page(
    connection: Connection,
    kind: Kind,
    symbol: str,
    timeframe: str | None,
    *,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
    newest_first: bool = False,
) -> list[Row]:
    """Up to ``limit`` rows of ``symbol`` with ``start_ms <= time < end_ms`` (None: no
    bound), oldest first, or the newest ``limit`` when ``newest_first`` (still returned
    oldest first). Each row is the time in epoch ms, then ``kind.columns``."""
    low = -(2**63) if start_ms is None else start_ms
    high = 2**63 - 1 if end_ms is None else end_ms
    if limit <= 0 or low >= high:
        return []
    stored_columns = [c for c in kind.columns if c != "complete"]
    where = "symbol = ? AND {t} >= ? AND {t} < ?"
    params: tuple[Any, ...] = (symbol, low, high)
    if kind.has_timeframe:
        where += " AND timeframe = ?"
        params += (timeframe,)
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT {kind.time_column}, {', '.join(stored_columns)} FROM {kind.table.name} "
        f"WHERE {where.format(t=kind.time_column)} ORDER BY {kind.time_column} {order} LIMIT ?"
    )
    # Plain tuples from the driver's cursor: a page may be 50,000 rows.
    rows = fetch_tuples(connection, sql, (*params, limit))
    if newest_first:
        rows.reverse()
    if kind is not CANDLES:
        return rows
    rows = [(*row, True) for row in rows]
    if not newest_first and len(rows) == limit:
        return rows  # the open buckets come after every stored one: not on this page
    assert timeframe is not None
    unwritten = open_candles(connection, symbol, timeframe, start_ms=low, end_ms=high)
    rows += [(*row, False) for row in unwritten.to_rows()]
    return rows[-limit:] if newest_first else rows[:limit]


def open_candles(
    connection: Connection, symbol: str, timeframe: str, *, start_ms: int, end_ms: int
) -> MinuteCandles:
    """The candles the candle service has not written yet, built from the ticks: the
    bucket of the newest tick and the one before it, when newer than the newest stored
    candle, with ``start_ms <= ts_open < end_ms``.

    Built as the service builds them: its day start and price basis (from ``settings``),
    one-minute candles from the ticks (or the stored ones), rolled up.
    """
    newest = connection.execute(
        text("SELECT max(ts) FROM ticks WHERE symbol = :s"), {"s": symbol}
    ).scalar()
    if newest is None:
        return MinuteCandles.empty()
    stored = read_settings(connection, (_DAY_START_KEY, _PRICE_BASIS_KEY))
    bucketing = Bucketing(parse_day_start(stored.get(_DAY_START_KEY, "00:00 UTC")))
    basis = stored.get(_PRICE_BASIS_KEY, "mid")

    def one(values: Sequence[int], ends: bool = False) -> int:
        array = np.array(values, dtype=np.int64)
        found = bucketing.ends(timeframe, array) if ends else bucketing.starts(timeframe, array)
        return int(found[0])

    current = one([int(newest)])
    low = one([current - 1])
    last_written = connection.execute(
        text("SELECT max(ts_open) FROM candles WHERE symbol = :s AND timeframe = :tf"),
        {"s": symbol, "tf": timeframe},
    ).scalar()
    if last_written is not None:
        low = max(low, one([int(last_written)], ends=True))
    high = one([current], ends=True)
    if low >= high or high <= start_ms or low >= end_ms:
        return MinuteCandles.empty()
    written_minutes = read_minute_candles(connection, symbol, low, high)
    fresh_from = low if not len(written_minutes) else int(written_minutes.ts_open[-1]) + MINUTE_MS
    newest_minute = int(newest) - int(newest) % MINUTE_MS
    minutes = np.arange(fresh_from, newest_minute + MINUTE_MS, MINUTE_MS, dtype=np.int64)
    fresh = aggregate_minutes(connection, symbol, minutes, basis)
    base = MinuteCandles.merge(written_minutes, fresh)
    built = base if timeframe == "1m" else roll_up(bucketing, timeframe, base)
    keep = (built.ts_open >= max(low, start_ms)) & (built.ts_open < end_ms)
    return built.select(keep)


def iter_pages(
    engine: Engine,
    kind: Kind,
    symbol: str,
    timeframe: str | None,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    page_rows: int = 50_000,
    timeout_seconds: float | None = None,
) -> Iterator[list[Row]]:
    """Every row of ``symbol`` in ``[start_ms, end_ms)``, oldest first, in pages of at
    most ``page_rows``: one short transaction per page, so nothing is held open between
    pages and memory stays at one page. Raises ``UnknownSymbolError`` (before yielding
    anything) when the symbol has no data of this kind at all."""
    if page_rows <= 0:
        raise ValueError(f"page_rows must be > 0, got {page_rows}")
    if kind.has_timeframe:
        check_timeframe(str(timeframe))
    low = start_ms
    first = True
    while True:
        with read_transaction(engine, timeout_seconds=timeout_seconds) as connection:
            page = read_page(
                connection, kind, symbol, timeframe, start_ms=low, end_ms=end_ms, limit=page_rows
            )
            if first and not page and not has_symbol(connection, kind, symbol):
                raise UnknownSymbolError(unknown_symbol_message(connection, kind, symbol))
            first = False
        if page:
            yield page
        if len(page) < page_rows:
            return
        low = int(page[-1][0]) + 1


def unknown_symbol_message(connection: Connection, kind: Kind, symbol: str) -> str:
    known = stored_symbols_by_kind(connection)[kind.name]
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return (
        f"no {kind.name} stored for symbol {symbol!r}; symbols with {kind.name}: {shown or 'none'}"
    )


__all__ = [
    "BOOK",
    "CANDLES",
    "KINDS",
    "SENTIMENT",
    "Kind",
    "Row",
    "UnknownSymbolError",
    "check_timeframe",
    "has_symbol",
    "iter_pages",
    "open_candles",
    "read_page",
    "read_transaction",
    "stored_symbols_by_kind",
    "to_epoch_ms",
    "unknown_symbol_message",
]
