"""Derived data read back from Python: DataFrames, batches, times, timeouts, on real
SQLite and PostgreSQL databases filled by the real candle service."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from market_data_services import (
    AggregatorService,
    UnknownSymbolError,
    iter_candles,
    read_book_metrics,
    read_candles,
    read_sentiment,
)
from market_data_services.ingest import write_ticks
from market_data_services.market.timeframes import MINUTE_MS
from market_data_services.storage.derived import read_transaction, to_epoch_ms
from tests.derived_data import BOOK_ROWS, NOW_S, SENTIMENT_ROWS, T0, fill, ticks


@pytest.fixture
def filled(engine: Engine) -> Engine:
    fill(engine)
    return engine


def test_candles_come_as_a_frame_on_a_utc_index_with_the_documented_columns(
    filled: Engine,
) -> None:
    frame = read_candles(filled, "EUR/USD", "1m")
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    assert list(frame.columns) == [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "tick_count",
        "complete",
    ]
    assert frame.index[0] == pd.Timestamp("2026-11-30T04:00:00Z")
    assert len(frame) == 11
    assert frame["complete"].tolist() == [True] * 10 + [False]
    assert frame["tick_count"].dtype == "int64"
    mids = [t.mid for t in ticks()]
    assert frame["open"].iloc[0] == mids[0] and frame["close"].iloc[-1] == mids[-1]
    assert frame["tick_count"].sum() == len(mids)


def test_start_and_end_take_datetimes_iso_strings_or_epoch_ms(filled: Engine) -> None:
    by_datetime = read_candles(
        filled,
        "EUR/USD",
        "5m",
        datetime(2026, 11, 30, 4, 5, tzinfo=UTC),
        datetime(2026, 11, 30, 4, 10),  # naive: UTC
    )
    by_iso = read_candles(filled, "EUR/USD", "5m", "2026-11-30T04:05:00Z", "2026-11-30T04:10")
    by_ms = read_candles(filled, "EUR/USD", "5m", T0 + 5 * MINUTE_MS, T0 + 10 * MINUTE_MS)
    pd.testing.assert_frame_equal(by_datetime, by_iso)
    pd.testing.assert_frame_equal(by_datetime, by_ms)
    assert by_ms.index.tolist() == [pd.Timestamp("2026-11-30T04:05:00Z")]


def test_a_url_works_as_well_as_an_engine(filled: Engine) -> None:
    url = filled.url.render_as_string(hide_password=False)
    pd.testing.assert_frame_equal(
        read_candles(url, "EUR/USD", "1h"), read_candles(filled, "EUR/USD", "1h")
    )


def test_batches_hold_at_most_batch_rows_and_join_to_the_whole(filled: Engine) -> None:
    batches = list(iter_candles(filled, "EUR/USD", "1m", batch_rows=3))
    assert [len(b) for b in batches] == [3, 3, 3, 2]
    pd.testing.assert_frame_equal(pd.concat(batches), read_candles(filled, "EUR/USD", "1m"))


def test_book_metrics_and_sentiment_have_their_tables_columns(filled: Engine) -> None:
    book = read_book_metrics(filled, "EUR/USD")
    assert len(book) == BOOK_ROWS
    assert book.index[1] == pd.Timestamp("2026-11-30T04:00:01.250Z")
    assert list(book.columns)[:3] == ["best_bid", "best_ask", "spread"]
    assert "ofi" in book.columns and "symbol" not in book.columns
    sentiment = read_sentiment(filled, "EUR/USD", start="2026-11-30T01:00:00Z")
    assert len(sentiment) == SENTIMENT_ROWS - 1
    assert sentiment["signal"].tolist() == [0, 1, -1, 0]


def test_an_unknown_symbol_raises_naming_it_and_the_stored_ones(filled: Engine) -> None:
    with pytest.raises(UnknownSymbolError, match=r"'USD/JPY'.*EUR/USD"):
        read_candles(filled, "USD/JPY", "1m")


def test_a_known_symbol_outside_the_range_is_an_empty_frame(filled: Engine) -> None:
    frame = read_candles(filled, "EUR/USD", "1m", "2020-01-01", "2020-01-02")
    assert frame.empty and list(frame.columns) == list(
        read_candles(filled, "EUR/USD", "1m").columns
    )
    assert str(frame.index.tz) == "UTC"


def test_a_bad_timeframe_or_time_says_what_is_valid(filled: Engine) -> None:
    with pytest.raises(ValueError, match=r"'2m'.*1m, 5m, 15m"):
        read_candles(filled, "EUR/USD", "2m")
    with pytest.raises(ValueError, match=r"start: .*neither ISO-8601"):
        read_candles(filled, "EUR/USD", "1m", start="yesterday")
    with pytest.raises(ValueError, match=r"end: expected a datetime"):
        to_epoch_ms(1.5, "end")  # type: ignore[arg-type]


def test_without_pandas_the_error_names_the_extra(
    filled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # what import sees when it is absent
    with pytest.raises(ImportError, match=r"market-data-services\[pandas\]"):
        read_candles(filled, "EUR/USD", "1m")


def test_a_read_transaction_ends_a_statement_at_its_timeout(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        slow = "SELECT pg_sleep(30)"
    else:
        slow = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000)"
            " SELECT count(*) FROM n"
        )
    with pytest.raises(OperationalError), read_transaction(engine, timeout_seconds=0.2) as c:
        c.execute(text(slow))
    # The pool's connection is still good afterwards.
    with read_transaction(engine, timeout_seconds=5) as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_an_open_bucket_is_the_candle_the_service_writes_once_it_closes(engine: Engine) -> None:
    """Built as the service builds it: its day start and price basis, from the ticks."""
    write_ticks(
        engine,
        [("EUR/USD", t.ts, t.bid, t.ask, None) for t in ticks()],
        wall_clock=lambda: NOW_S,
    )

    def run_service_at(seconds: float) -> None:
        service = AggregatorService(
            engine,
            symbols=["EUR/USD"],
            day_start="17:00 America/New_York",
            price_basis="bid",
            wall_clock=lambda: seconds,
            registry=CollectorRegistry(),
        )
        assert service.run_once().value == "succeeded"

    run_service_at(NOW_S)
    before = {tf: read_candles(engine, "EUR/USD", tf) for tf in ("1m", "15m", "4h", "1d")}
    assert all(not frame["complete"].iloc[-1] for frame in before.values())
    # 2026-11-29T22:00:00Z is 17:00 in New York: the trading day of the ticks.
    assert before["1d"].index.tolist() == [pd.Timestamp("2026-11-29T22:00:00Z")]
    run_service_at(NOW_S + 2 * 86_400)  # every bucket has closed and been written
    for tf, frame in before.items():
        after = read_candles(engine, "EUR/USD", tf)
        assert after["complete"].all(), tf
        pd.testing.assert_frame_equal(
            after.drop(columns="complete"), frame.drop(columns="complete"), check_exact=True
        )
