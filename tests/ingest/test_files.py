from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services.ingest import BadFileError, ingest_dom, ingest_sentiment
from market_data_services.ingest.files import csv_data_rows, loads_json, parse_number
from market_data_services.ingest.layouts.ticks.common import NotATickFileError

DATA = Path(__file__).parents[1] / "data"


@pytest.mark.parametrize(
    ("text", "number"),
    [("1.2345", 1.2345), (" -3 ", -3.0), ("+.5", 0.5), ("1e-5", 1e-5), ("7.", 7.0), (2, 2.0)],
)
def test_parse_number_reads_plain_decimals(text: object, number: float) -> None:
    assert parse_number(text, "bid") == number


@pytest.mark.parametrize("text", ["1_000", "0x10", "0x1p3", "\u0661", "1,5", "", "1e", "--1"])
def test_parse_number_refuses_what_float_would_read_or_is_no_number(text: str) -> None:
    with pytest.raises(ValueError, match=r"^bid '.*' is not a decimal number$"):
        parse_number(text, "bid")


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1e309", 10**400])
def test_parse_number_reads_non_finite_spellings_as_not_finite_for_the_kinds_to_reject(
    text: object,
) -> None:
    assert not math.isfinite(parse_number(text, "bid"))


def test_json_nested_too_deep_is_a_value_error_not_a_recursion_error() -> None:
    with pytest.raises(ValueError, match="JSON nested too deeply"):
        loads_json("[" * 100_000)


def test_a_reader_used_outside_the_pipeline_raises_the_damage_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"timestamp,bid,ask\n1699999000000,1.1,1.2\n\xff\n")
    rows = csv_data_rows(path, NotATickFileError)
    assert next(rows) == (2, ["1699999000000", "1.1", "1.2"])
    with pytest.raises(BadFileError, match=rf"^{path}:3: not UTF-8 text \(invalid start byte\)$"):
        next(rows)


def _failed(registry: CollectorRegistry, kind: str, reason: str) -> float | None:
    return registry.get_sample_value(
        "mds_ingest_files_failed_total", {"kind": kind, "reason": reason}
    )


def test_a_truncated_book_file_keeps_the_books_before_and_counts_the_failure(
    engine: Engine, tmp_path: Path
) -> None:
    data = (DATA / "orderbook" / "bybit_2024-12-01_XRPUSDT_ob500.data.gz").read_bytes()
    damaged = tmp_path / "bybit_2024-12-01_XRPUSDT_ob500.data.gz"
    damaged.write_bytes(data[: len(data) // 2])
    registry = CollectorRegistry()
    report = ingest_dom(engine, damaged, registry=registry)
    [failure] = report.failed_files
    assert (failure.path, failure.reason) == (str(damaged), "compression")
    assert failure.line is not None and report.accepted == failure.line - 1 > 0
    assert _failed(registry, "dom", "compression") == 1
    assert _failed(registry, "dom", "csv") == 0  # every reason exported from the start


def test_a_sentiment_file_with_a_stray_quote_keeps_the_readings_before_it(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "timestamp,symbol,long_pct,short_pct\n"
        "2024-01-01T00:00:00Z,EUR/USD,40,60\n"
        '2024-01-01T00:01:00Z,EUR/USD,"40,60\n'
        "2024-01-01T00:02:00Z,EUR/USD,40,60\n"
    )
    registry = CollectorRegistry()
    report = ingest_sentiment(engine, path, registry=registry)
    assert [str(f) for f in report.failed_files] == [
        f"{path}:3: CSV error (a quoted field runs from line 3 over 1 line ends (a stray quote?))"
    ]
    assert report.accepted == 1
    assert _failed(registry, "sentiment", "csv") == 1
