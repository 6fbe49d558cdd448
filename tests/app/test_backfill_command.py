from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from market_data_services.app.cli import main
from market_data_services.storage import (
    candles,
    create_engine,
    dom_metrics,
    sentiment_metrics,
    settings,
)
from tests.aggregators.candles.reference import stored_candles
from tests.app.test_cli import imported_modules
from tests.conftest import SAMPLE_DATA

FXCM = SAMPLE_DATA / "forex_ticks" / "lean_fxcm"
SUNDAY = "20140504_{pair}_tick_quote.csv.gz"
#: What running a migration needs and checking a current schema does not.
MIGRATION_TOOLS = ("alembic", "mako", "pygments")


def ingest(url: str, pair: str, symbol: str) -> None:
    path = FXCM / pair / SUNDAY.format(pair=pair)
    args = ["ingest", "ticks", str(path), "--symbol", symbol, "--tz", "UTC-05:00", "--db", url]
    assert main(args) == 0


def candle_counts(url: str) -> dict[tuple[str, str], int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(candles.c.symbol, candles.c.timeframe, func.count()).group_by(
                candles.c.symbol, candles.c.timeframe
            )
        ).all()
    engine.dispose()
    return {(s, tf): n for s, tf, n in rows}


def stored_settings(url: str) -> dict[str, str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(settings.c.key, settings.c.value)).all()
    engine.dispose()
    return dict(rows)


@pytest.fixture
def loaded(database_url: str) -> str:
    assert main(["db", "upgrade", "--db", database_url]) == 0
    ingest(database_url, "eurusd", "EUR/USD")
    ingest(database_url, "nzdusd", "NZD/USD")
    return database_url


def test_backfill_builds_every_symbol_and_records_its_settings(
    loaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["backfill", "--db", loaded, "--price-basis", "bid", "--day-start", "00:00 UTC-05:00"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("2 symbols, ")
    assert "price basis bid, day start 00:00 UTC-05:00" in out
    counts = candle_counts(loaded)
    assert {s for s, _ in counts} == {"EUR/USD", "NZD/USD"}
    assert counts[("EUR/USD", "1d")] == 1  # Sunday evening is one UTC-5 day
    assert stored_settings(loaded) == {
        "candles.price_basis": "bid",
        "candles.day_start": "00:00 UTC-05:00",
    }


def test_backfill_with_other_settings_exits_2_until_rebuild(
    loaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", "--db", loaded]) == 0
    before = candle_counts(loaded)
    capsys.readouterr()
    assert main(["backfill", "--db", loaded, "--price-basis", "ask"]) == 2
    err = capsys.readouterr().err
    assert "built with price basis 'mid'" in err and "--rebuild" in err
    assert err.strip().count("\n") == 0
    assert main(["backfill", "--db", loaded, "--price-basis", "ask", "--rebuild"]) == 0
    assert candle_counts(loaded) == before
    assert stored_settings(loaded)["candles.price_basis"] == "ask"


def test_backfill_of_one_symbol_and_a_window_rebuilds_whole_days(loaded: str) -> None:
    args = ["backfill", "--db", loaded, "--symbol", "NZD/USD"]
    window = ["--from", "2014-05-04T20:00:00", "--to", "2014-05-04T21:00:00"]
    assert main(args + window) == 0
    engine = create_engine(loaded)
    windowed = stored_candles(engine)
    assert {s for s, _, _ in windowed} == {"NZD/USD"}
    assert main(args) == 0
    may_4 = (1_399_161_600_000, 1_399_248_000_000)  # 2014-05-04 00:00 UTC to 05-05
    full = {k: v for k, v in stored_candles(engine).items() if may_4[0] <= k[2] < may_4[1]}
    engine.dispose()
    assert windowed == full  # the window's whole day was built from all its ticks


def test_backfill_on_an_empty_database_says_so(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert main(["backfill", "--db", database_url]) == 0
    assert "nothing to backfill" in capsys.readouterr().out


def test_backfill_refuses_a_bad_day_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--day-start", "noon"]) == 2
    assert "day start must look like 'HH:MM ZONE'" in capsys.readouterr().err


ORDERBOOK = SAMPLE_DATA / "orderbook" / "bybit_2024-12-01_XRPUSDT_ob500.data.gz"
IG = SAMPLE_DATA / "sentiment" / "ig_client_sentiment.csv.gz"


@pytest.fixture
def market(database_url: str) -> str:
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert main(["ingest", "dom", str(ORDERBOOK), "--db", database_url]) == 0
    assert main(["ingest", "sentiment", str(IG), "--tz", "UTC+02:00", "--db", database_url]) == 0
    return database_url


def signals(url: str) -> dict[str, list[int]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(sentiment_metrics.c.symbol, sentiment_metrics.c.signal).order_by(
                sentiment_metrics.c.ts
            )
        ).all()
        books = connection.execute(select(func.count()).select_from(dom_metrics)).scalar_one()
    engine.dispose()
    out: dict[str, list[int]] = {"books": [books]}
    for symbol, signal in rows:
        out.setdefault(symbol, []).append(signal)
    return out


def test_backfill_computes_book_and_sentiment_metrics_once(
    market: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["backfill", "--db", market, "--kind", "dom", "--kind", "sentiment"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("order books: 1 symbol, 50 new snapshots computed in ")
    assert out[1].startswith("sentiment: 29 symbols, 87 new readings computed in ")
    stored = signals(market)
    assert stored["books"] == [50]
    assert stored["EUR/USD"] == [0, 0, 0]  # 39 % long: neither threshold
    assert stored["USD/CHF"] == [-1, -1, -1]  # 79 % long: the crowd is long
    assert stored["CHF/JPY"] == [1, 1, 1]  # 21 % long
    assert main(["backfill", "--db", market, "--kind", "dom", "--kind", "sentiment"]) == 0
    again = capsys.readouterr().out
    assert "0 new snapshots" in again and "0 new readings" in again


def test_backfill_takes_the_sentiment_settings_from_the_configuration(
    market: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mds.toml"
    config.write_text("[services.sentiment]\nlong_enter = 0.38\nlong_exit = 0.36\n")
    args = ["backfill", "--db", market, "--kind", "sentiment", "--config", str(config)]
    assert main(args) == 0
    assert signals(market)["EUR/USD"] == [-1, -1, -1]  # 39 % is now crowd long
    config.write_text("[services.sentiment]\nlong_enter = 0.4\nlong_exit = 0.36\n")
    capsys.readouterr()
    assert main(args) == 2
    assert "computed with window_seconds=3600" in capsys.readouterr().err
    assert main([*args, "--rebuild"]) == 0
    assert signals(market)["EUR/USD"] == [0, 0, 0]


def test_backfill_and_ingest_on_a_current_schema_do_not_import_alembic(loaded: str) -> None:
    """The schema check of a current database is one query: Alembic, mako and pygments
    (a fifth of the start-up) are imported only to migrate."""
    path = FXCM / "eurusd" / SUNDAY.format(pair="eurusd")
    commands = [
        ["backfill", "--kind", "candles", "--no-progress", "--db", loaded],
        ["ingest", "ticks", str(path), "--symbol", "EUR/USD", "--tz", "UTC-05:00", "--db", loaded],
    ]
    for args in commands:
        modules = imported_modules(*args)
        assert "market_data_services.storage.migrate" in modules  # the check ran
        migration_tools = sorted(m for m in modules if m.split(".")[0] in MIGRATION_TOOLS)
        assert not migration_tools, f"mds {args[0]} imports {migration_tools}"
    assert candle_counts(loaded)[("EUR/USD", "1m")] > 0
