"""Sentiment readings in: files and live feeds, checked row by row."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.ingest.sentiment import (
    ImplausibleTimeError,
    NotASentimentFileError,
    SentimentReading,
    ingest_sentiment,
    inspect_sentiment_files,
    write_sentiment,
)
from market_data_services.storage import sentiment_readings

NOW = 1_700_000_000.0
T0 = 1_699_000_000_000


def stored_readings(engine: Engine) -> list[tuple[object, ...]]:
    r = sentiment_readings
    with engine.connect() as connection:
        rows = connection.execute(
            select(r.c.symbol, r.c.ts, r.c.source, r.c.long_share, r.c.short_share).order_by(r.c.id)
        )
        return [tuple(row) for row in rows]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_ig_export_is_read_one_reading_per_market_in_the_given_zone(
    engine: Engine, sentiment_dir: Path
) -> None:
    path = sentiment_dir / "ig_client_sentiment.csv.gz"
    report = ingest_sentiment(engine, path, tz="UTC+02:00", wall_clock=lambda: NOW)
    assert (report.accepted, report.rejected) == (3 * 29, 0)
    rows = stored_readings(engine)
    # The README: 2021-02-14 12:46:55 local, EURUSD 39.0 % long.
    assert rows[1] == ("EUR/USD", 1_613_299_615_000, "ig", 0.39, 0.61)
    assert {r[0] for r in rows} >= {"EUR/GBP", "USD/SGD", "NZD/JPY"}


def test_bad_readings_are_rejected_with_reason_and_line_and_good_ones_kept(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "sentiment.csv"
    path.write_text(
        "timestamp,symbol,long_pct,short_pct,source\n"
        "2023-11-14T10:00:00Z,EUR/USD,62.5,37.5,acme\n"  # 2 good
        "2023-11-14T10:00:00Z,EUR/USD,101,-1,acme\n"  # 3 out of range
        "2023-11-14T10:00:01Z,EUR/USD,60,30,acme\n"  # 4 does not add up
        "2023-11-14T10:00:02Z,EUR/USD,nan,50,acme\n"  # 5 not a number
        "2023-11-14T10:00:03Z,EUR/USD,sixty,40,acme\n"  # 6 malformed
        "2031-01-01T00:00:00Z,EUR/USD,60,40,acme\n"  # 7 future
        "2023-11-14T10:00:04Z,GBP/USD,60,40,acme\n"  # 8 unknown symbol
        "2023-11-14T10:00:05Z,EUR/USD,60.4,39.4,\n"  # 9 good within tolerance, no source
    )
    registry = CollectorRegistry()
    report = ingest_sentiment(
        engine, path, symbols=["EUR/USD"], registry=registry, wall_clock=lambda: NOW
    )
    assert [(r.reason, r.where) for r in report.rejections] == [
        ("out_of_range", f"{path}:3"),
        ("sum_mismatch", f"{path}:4"),
        ("not_finite", f"{path}:5"),
        ("malformed", f"{path}:6"),
        ("future_timestamp", f"{path}:7"),
        ("unknown_symbol", f"{path}:8"),
    ]
    assert report.rejections[1].message == (
        "EUR/USD: long 60 % + short 30 % = 90 %, not 100 (tolerance 1)"
    )
    assert [(r[2], r[3]) for r in stored_readings(engine)] == [("acme", 0.625), ("", 0.604)]
    assert sample(registry, "mds_sentiment_readings_rejected_total", reason="sum_mismatch") == 1
    assert sample(registry, "mds_sentiment_readings_written_total") == 2


def test_loading_the_same_file_twice_adds_nothing(engine: Engine, sentiment_dir: Path) -> None:
    path = sentiment_dir / "ig_client_sentiment.csv.gz"
    ingest_sentiment(engine, path, wall_clock=lambda: NOW)
    again = ingest_sentiment(engine, path, wall_clock=lambda: NOW)
    assert (again.written, again.duplicates) == (0, 87)
    assert len(stored_readings(engine)) == 87


def test_a_file_that_is_not_sentiment_says_why(tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\nalice,30\n")
    with pytest.raises(NotASentimentFileError, match=r"notes\.csv: not a sentiment file"):
        inspect_sentiment_files(notes)
    plain = tmp_path / "plain.csv"
    plain.write_text("timestamp,symbol,long_pct,short_pct\n")
    with pytest.raises(NotASentimentFileError, match="try --layout plain"):
        inspect_sentiment_files(plain, layout="ig")


def test_write_sentiment_takes_shares_and_fills_in_the_short_side(engine: Engine) -> None:
    report = write_sentiment(
        engine,
        [
            SentimentReading("EUR/USD", T0, 0.7),
            ("EUR/USD", T0, 0.6, 0.4, "other"),
            ("EUR/USD", T0 + 1, 1.2),
            ("EUR/USD", "later", 0.5),
        ],
        wall_clock=lambda: NOW,
    )
    assert report.rejected_by_reason == {"out_of_range": 1, "malformed": 1}
    assert stored_readings(engine) == [
        ("EUR/USD", T0, "", 0.7, 1 - 0.7),
        ("EUR/USD", T0, "other", 0.6, 0.4),
    ]


def test_sentiment_times_in_seconds_are_told_by_magnitude_and_compact_dates_refused(
    engine: Engine, tmp_path: Path
) -> None:
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("timestamp,symbol,long_pct,short_pct\n1699999000,EUR/USD,40,60\n")
    assert ingest_sentiment(engine, seconds, wall_clock=lambda: NOW).written == 1
    assert [r[1] for r in stored_readings(engine)] == [1_699_999_000_000]
    dates = tmp_path / "ig.csv"
    dates.write_text("Date,EURUSD\n20231114,40\n")
    with pytest.raises(ImplausibleTimeError) as caught:
        ingest_sentiment(engine, dates, wall_clock=lambda: NOW)
    assert str(caught.value) == (
        f"{dates}:2: Date 20231114 read as epoch s (auto) is 1970-08-23, before 1990-01-01; "
        "looks like a YYYYMMDD date: write it as 2023-11-14"
    )
    assert len(stored_readings(engine)) == 1


def test_a_later_sentiment_row_before_1990_is_rejected_with_its_line(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "timestamp,symbol,long_pct,short_pct\n"
        "2023-11-14T10:00:00Z,EUR/USD,40,60\n"
        "1970-01-01T00:00:00Z,EUR/USD,41,59\n"
    )
    registry = CollectorRegistry()
    report = ingest_sentiment(engine, path, registry=registry, wall_clock=lambda: NOW)
    assert [str(r) for r in report.rejections] == [
        f"{path}:3: timestamp 1970-01-01T00:00:00Z is before 1990-01-01"
    ]
    assert len(stored_readings(engine)) == 1
    assert (
        sample(registry, "mds_sentiment_readings_rejected_total", reason="timestamp_out_of_range")
        == 1
    )
