"""Candles from the real tick files against pandas, exactly, on SQLite and PostgreSQL.

The files are loaded once per backend through the CLI (``mds ingest ticks``), candles
built through the CLI (``mds backfill``), and compared with what pandas computes from
the same files read by pandas itself (``read_csv``,
``resample(...).ohlc()`` and counts). They need the full data set (``MDS_SHARED_DATA``):
without it they skip, and fail in CI. Both feeds, both pairs, every timeframe, every
price basis; the two weekends are in the data; a New York 17:00 day start is checked on
the mid price (each extra configuration is a full rebuild, so only one basis runs it).

SQLite gets all 13 days of every series (3.07 million ticks). PostgreSQL gets the six
days around the two weekends (Friday, Sunday, Monday twice: 0.95 million ticks), which
keeps its share of the suite near a minute: every check runs on both, only the
PostgreSQL data is shorter.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from market_data_services.app.cli import main
from market_data_services.storage import candles, create_engine
from tests.databases import DatabaseFactory, backend_params

pytestmark = pytest.mark.slow

# (folder, pair, symbol, the feed's data time zone per the data README)
SERIES = [
    ("lean_fxcm", "eurusd", "FXCM:EUR/USD", "UTC-05:00"),
    ("lean_fxcm", "nzdusd", "FXCM:NZD/USD", "UTC-05:00"),
    ("lean_oanda", "eurusd", "OANDA:EUR/USD", "UTC"),
    ("lean_oanda", "nzdusd", "OANDA:NZD/USD", "UTC"),
]
#: The days PostgreSQL loads: both weekends with the weekday on each side.
POSTGRES_DAYS = ("20140502", "20140504", "20140505", "20140509", "20140511", "20140512")
FEED_OFFSET = {"UTC-05:00": pd.Timedelta(hours=5), "UTC": pd.Timedelta(0)}
RULES = {"1m": "1min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "4h": "4h"}
COLUMNS = ["open", "high", "low", "close", "volume", "tick_count"]


def day_files(folder: Path, days: tuple[str, ...] | None = None) -> list[Path]:
    paths = sorted(folder.glob("*_tick_quote.csv.gz"))
    return [p for p in paths if days is None or p.name[:8] in days]


def read_feed(folder: Path, offset: pd.Timedelta, days: tuple[str, ...] | None) -> pd.DataFrame:
    """The day files of one series, as pandas reads them: UTC index, bid, ask."""
    frames = []
    for path in day_files(folder, days):
        day = pd.Timestamp(datetime.strptime(path.name[:8], "%Y%m%d"), tz="UTC")
        with gzip.open(path, "rt", newline="") as stream:
            # pandas 3 parses floats correctly rounded (checked on all 3,074,614 rows).
            frame = pd.read_csv(stream, header=None, names=["ms", "bid", "ask"])
        frame.index = day + offset + pd.to_timedelta(frame.pop("ms"), unit="ms")
        frames.append(frame)
    return pd.concat(frames)


class Oracle:
    """pandas' candles of each series, computed once per (symbol, basis, day start)."""

    def __init__(self, ticks_dir: Path, days: tuple[str, ...] | None) -> None:
        self.feeds = {
            symbol: read_feed(ticks_dir / folder / pair, FEED_OFFSET[zone], days)
            for folder, pair, symbol, zone in SERIES
        }
        self._cache: dict[tuple[str, str, bool], dict[str, pd.DataFrame]] = {}

    def candles(self, symbol: str, basis: str, new_york: bool = False) -> dict[str, pd.DataFrame]:
        key = (symbol, basis, new_york)
        if key not in self._cache:
            self._cache[key] = pandas_candles(self.feeds[symbol], basis, new_york)
        return self._cache[key]


_ORACLES: dict[str, Oracle] = {}


def days_for(backend: str) -> tuple[str, ...] | None:
    return POSTGRES_DAYS if backend == "postgresql" else None


@pytest.fixture(scope="module", params=backend_params())
def loading(
    request: pytest.FixtureRequest, full_ticks_dir: Path, database_factory: DatabaseFactory
) -> tuple[str, dict[str, str]]:
    """A database with the four series loaded through ``mds ingest ticks``, and what
    the command printed for each. (The data first: without it no database is made.)"""
    backend: str = request.param
    url = database_factory.url(backend)
    assert main(["db", "upgrade", "--db", url]) == 0
    printed: dict[str, str] = {"backend": backend}
    for folder, pair, symbol, zone in SERIES:
        paths = [str(p) for p in day_files(full_ticks_dir / folder / pair, days_for(backend))]
        args = ["ingest", "ticks", *paths, "--symbol", symbol, "--layout", "lean", "--tz", zone]
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            assert main([*args, "--db", url, "--no-progress"]) == 0
        printed[symbol] = output.getvalue()
    return url, printed


@pytest.fixture
def loaded(loading: tuple[str, dict[str, str]]) -> str:
    return loading[0]


@pytest.fixture
def oracle(loading: tuple[str, dict[str, str]], full_ticks_dir: Path) -> Oracle:
    """pandas on the same files the database got (kept for the session)."""
    backend = loading[1]["backend"]
    if backend not in _ORACLES:
        _ORACLES[backend] = Oracle(full_ticks_dir, days_for(backend))
    return _ORACLES[backend]


# Rows in each of the POSTGRES_DAYS files, from the data README's table.
README_ROWS = {
    "FXCM:EUR/USD": [96406, 8025, 58143, 102122, 11776, 67129],
    "FXCM:NZD/USD": [73439, 21018, 68867, 54273, 24098, 65085],
    "OANDA:EUR/USD": [49341, 1164, 25177, 47634, 2643, 30642],
    "OANDA:NZD/USD": [41665, 2622, 27278, 31272, 5234, 32495],
}


def test_ingest_counts_match_the_data_readme(loading: tuple[str, dict[str, str]]) -> None:
    _, printed = loading
    if printed["backend"] == "sqlite":
        # All 13 days: rows, crossed and locked quotes as the data README measured them.
        expected = {
            "FXCM:EUR/USD": "1,144,807 ticks accepted (1,144,807 new, 0 already stored); "
            "0 rejected; 116,871 crossed and 142,462 locked quotes",
            "FXCM:NZD/USD": "939,205 ticks accepted (939,205 new, 0 already stored); "
            "0 rejected; 18,958 crossed and 13,814 locked quotes",
            "OANDA:EUR/USD": "532,903 ticks accepted (532,903 new, 0 already stored); "
            "0 rejected; 0 crossed and 0 locked quotes",
            "OANDA:NZD/USD": "457,699 ticks accepted (457,699 new, 0 already stored); "
            "0 rejected; 0 crossed and 0 locked quotes",
        }
    else:
        expected = {
            symbol: f"{sum(days):,} ticks accepted ({sum(days):,} new, "
            "0 already stored); 0 rejected"
            for symbol, days in README_ROWS.items()
        }
    for symbol, text in expected.items():
        assert text in printed[symbol], printed[symbol]


def pandas_candles(
    ticks: pd.DataFrame, basis: str, new_york: bool = False
) -> dict[str, pd.DataFrame]:
    """Every timeframe from pandas: ohlc of the price, count as volume and tick_count.

    With ``new_york``, days open at 17:00 New York: pandas resamples the local wall
    time (no DST change falls in these two weeks), 1d bins offset by 17 h and 4h bins
    by 1 h (17 = 1 + 4 x 4), and the bin labels go back to UTC.
    """
    price = (ticks.bid + ticks.ask) / 2 if basis == "mid" else ticks[basis]
    if new_york:
        price = price.tz_convert("America/New_York").tz_localize(None)
    offsets = {"1d": "17h", "4h": "1h"} if new_york else {}
    result: dict[str, pd.DataFrame] = {}
    for timeframe, rule in {**RULES, "1d": "1D"}.items():
        offset = offsets.get(timeframe)
        resampled = price.resample(rule, offset=offset) if offset else price.resample(rule)
        frame = resampled.ohlc()
        frame["volume"] = resampled.count().astype(float)
        frame["tick_count"] = resampled.count()
        frame = frame[frame.tick_count > 0]
        labels = frame.index.tz_localize("America/New_York") if new_york else frame.index
        frame.index = labels.tz_convert("UTC").as_unit("ms").asi8
        result[timeframe] = frame[COLUMNS]
    return result


def stored(url: str, symbol: str) -> dict[str, pd.DataFrame]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(candles).where(candles.c.symbol == symbol).order_by(candles.c.ts_open)
        ).all()
    engine.dispose()
    frame = pd.DataFrame(rows, columns=["symbol", "timeframe", "ts_open", *COLUMNS])
    return {
        tf: group.set_index("ts_open")[COLUMNS].rename_axis(None)
        for tf, group in frame.groupby("timeframe")
    }


def assert_same(ours: dict[str, pd.DataFrame], theirs: dict[str, pd.DataFrame], label: str) -> None:
    assert set(ours) == set(theirs) == {*RULES, "1d"}, label
    for timeframe, expected in theirs.items():
        got = ours[timeframe]
        where = f"{label} {timeframe}"
        assert np.array_equal(got.index.to_numpy(), expected.index.to_numpy()), where
        for column in COLUMNS:
            same = got[column].to_numpy() == expected[column].to_numpy()
            assert same.all(), (
                f"{where} {column}: first difference at ts_open "
                f"{got.index[np.argmin(same)]}: {got[column].to_numpy()[~same][:3]} "
                f"vs {expected[column].to_numpy()[~same][:3]}"
            )


@pytest.mark.parametrize("basis", ["mid", "bid", "ask"])
def test_every_candle_equals_pandas(loaded: str, oracle: Oracle, basis: str) -> None:
    args = ["backfill", "--db", loaded, "--price-basis", basis, "--rebuild", "--no-progress"]
    assert main(args) == 0
    for symbol in oracle.feeds:
        ours = stored(loaded, symbol)
        assert_same(ours, oracle.candles(symbol, basis), f"{symbol} {basis}")
        if basis == "mid":
            assert_weekends_closed(ours["1h"].index.to_numpy(), symbol)


def test_every_candle_equals_pandas_with_a_new_york_day_start(loaded: str, oracle: Oracle) -> None:
    day_start = "17:00 America/New_York"
    args = ["backfill", "--db", loaded, "--day-start", day_start, "--rebuild", "--no-progress"]
    assert main(args) == 0
    for symbol in oracle.feeds:
        ours = stored(loaded, symbol)
        assert_same(ours, oracle.candles(symbol, "mid", new_york=True), f"{symbol} {day_start}")
        opens = {pd.Timestamp(ts, unit="ms", tz="UTC").hour for ts in ours["1d"].index}
        assert opens == {21}  # 17:00 EDT


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value // 1_000_000)


def assert_weekends_closed(hours: np.ndarray, symbol: str) -> None:
    """No hourly candle from the Friday close to Sunday noon UTC; some on Sunday evening."""
    for friday, sunday in (("2014-05-02", "2014-05-04"), ("2014-05-09", "2014-05-11")):
        closed = (hours >= ms(f"{friday} 21:00")) & (hours < ms(f"{sunday} 12:00"))
        reopened = (hours > ms(f"{sunday} 12:00")) & (hours < ms(f"{sunday} 23:59"))
        assert not closed.any() and reopened.any(), f"{symbol} weekend {friday}"
