"""Derived data as pandas DataFrames: ``read_candles``, ``read_book_metrics``,
``read_sentiment``, and ``iter_*`` forms that yield one DataFrame per page.

pandas is an optional extra (``pip install 'market-data-services[pandas]'``); it is
imported on first use, and its absence is an ImportError naming the extra.

Every frame has a UTC ``DatetimeIndex`` named ``time`` (the candle's bucket start, or
the row's time) and the columns of ``COLUMNS``; ``start`` and ``end`` take datetimes
(naive: UTC), ISO-8601 strings or epoch milliseconds, and ``start <= time < end``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import URL, Engine

from market_data_services.storage.derived import (
    BOOK,
    CANDLES,
    SENTIMENT,
    Kind,
    Row,
    iter_pages,
    to_epoch_ms,
)
from market_data_services.storage.engine import create_engine

TimeLike = datetime | date | str | int
EngineOrUrl = Engine | URL | str
#: ``pandas.DataFrame``; typed loosely so pandas stays optional, stubs included.
DataFrame = Any

#: Rows per DataFrame of the ``iter_*`` forms (and per query of ``read_*``).
DEFAULT_BATCH_ROWS = 100_000

#: The columns of each kind's frames, besides the ``time`` index.
COLUMNS = {kind.name: kind.columns for kind in (CANDLES, BOOK, SENTIMENT)}

_DTYPES = {"tick_count": "int64", "complete": "bool", "signal": "int8"}


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ImportError(
            "reading derived data into DataFrames needs pandas: "
            "pip install 'market-data-services[pandas]'"
        ) from None


@contextmanager
def _engine(engine_or_url: EngineOrUrl) -> Iterator[Engine]:
    """The caller's engine, or one made for ``url`` and disposed of afterwards."""
    if isinstance(engine_or_url, Engine):
        yield engine_or_url
        return
    engine = create_engine(engine_or_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _frame(kind: Kind, rows: list[Row]) -> DataFrame:
    pandas = _pandas()
    frame = pandas.DataFrame.from_records(rows, columns=[kind.time_column, *kind.columns])
    index = pandas.to_datetime(frame.pop(kind.time_column).astype("int64"), unit="ms", utc=True)
    frame.index = pandas.DatetimeIndex(index, name="time")
    for name, dtype in _DTYPES.items():
        if name in frame.columns:
            frame[name] = frame[name].astype(dtype)
    float_columns = [c for c in kind.columns if c not in _DTYPES]
    frame[float_columns] = frame[float_columns].astype("float64")
    return frame


def _iter(
    kind: Kind,
    engine_or_url: EngineOrUrl,
    *,
    symbol: str,
    timeframe: str | None,
    start: TimeLike | None,
    end: TimeLike | None,
    batch_rows: int,
) -> Iterator[DataFrame]:
    _pandas()  # the missing extra is said before any database work
    start_ms = None if start is None else to_epoch_ms(start, "start")
    end_ms = None if end is None else to_epoch_ms(end, "end")
    with _engine(engine_or_url) as engine:
        for page in iter_pages(
            engine,
            kind,
            symbol,
            timeframe,
            start_ms=start_ms,
            end_ms=end_ms,
            page_rows=batch_rows,
        ):
            yield _frame(kind, page)


def _read(kind: Kind, batches: Iterator[DataFrame]) -> DataFrame:
    frames = list(batches)
    if not frames:
        return _frame(kind, [])
    return frames[0] if len(frames) == 1 else _pandas().concat(frames)


def iter_candles(
    engine_or_url: EngineOrUrl,
    symbol: str,
    timeframe: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[DataFrame]:
    """Candles of ``symbol`` and ``timeframe``, oldest first, one DataFrame of at most
    ``batch_rows`` at a time: memory stays at one batch however long the range."""
    return _iter(
        CANDLES,
        engine_or_url,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        batch_rows=batch_rows,
    )


def read_candles(
    engine_or_url: EngineOrUrl,
    symbol: str,
    timeframe: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> DataFrame:
    """Candles of ``symbol`` and ``timeframe`` with ``start <= bucket start < end``.

    Columns ``open high low close volume tick_count complete``; ``complete`` is False
    for the buckets the candle service has not written yet (the open one), built from
    the ticks. Raises ``UnknownSymbolError`` when the symbol has neither candles nor ticks.
    """
    return _read(CANDLES, iter_candles(engine_or_url, symbol, timeframe, start, end))


def iter_book_metrics(
    engine_or_url: EngineOrUrl,
    symbol: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[DataFrame]:
    """Book metrics of ``symbol``, oldest first, one DataFrame per batch."""
    return _iter(
        BOOK,
        engine_or_url,
        symbol=symbol,
        timeframe=None,
        start=start,
        end=end,
        batch_rows=batch_rows,
    )


def read_book_metrics(
    engine_or_url: EngineOrUrl,
    symbol: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> DataFrame:
    """Book metrics of ``symbol`` (one row per order-book snapshot), the columns of
    the ``dom_metrics`` table."""
    return _read(BOOK, iter_book_metrics(engine_or_url, symbol, start, end))


def iter_sentiment(
    engine_or_url: EngineOrUrl,
    symbol: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[DataFrame]:
    """Sentiment metrics of ``symbol``, oldest first, one DataFrame per batch."""
    return _iter(
        SENTIMENT,
        engine_or_url,
        symbol=symbol,
        timeframe=None,
        start=start,
        end=end,
        batch_rows=batch_rows,
    )


def read_sentiment(
    engine_or_url: EngineOrUrl,
    symbol: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> DataFrame:
    """Sentiment metrics of ``symbol`` (one row per reading time), the columns of the
    ``sentiment_metrics`` table; ``signal`` is the contrarian -1, 0 or +1."""
    return _read(SENTIMENT, iter_sentiment(engine_or_url, symbol, start, end))


__all__ = [
    "COLUMNS",
    "DEFAULT_BATCH_ROWS",
    "iter_book_metrics",
    "iter_candles",
    "iter_sentiment",
    "read_book_metrics",
    "read_candles",
    "read_sentiment",
]
