from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services.ingest import BadFileError, ingest_dom, ingest_sentiment
from market_data_services.ingest.files import (
    collect_damage,
    collect_refused,
    csv_data_rows,
    loads_json,
    open_text,
    parse_number,
)
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


def _lean_lines(count: int) -> bytes:
    prices = ((1.3 + (i * 7919 % 10007) / 1e5, i) for i in range(count))
    return b"".join(b"%d,%.5f,%.5f\r\n" % (i * 7, bid, bid + 2e-5) for bid, i in prices)


def _read_lines(path: Path) -> tuple[str, int, list[str]]:
    """(text, last line, damage) from iterating the file's lines."""
    with collect_damage() as damage, open_text(path, NotATickFileError) as lines:
        text = "".join(lines)
        return text, lines.line, [str(d) for d in damage]


# 150,000 lines are about 3.6 MB decompressed: the damage falls near the start, in the
# middle and near the end.
@pytest.mark.parametrize("kept", [0.02, 0.5, 0.97])
def test_reading_a_truncated_gzip_keeps_complete_lines_and_names_the_next(
    tmp_path: Path, kept: float
) -> None:
    path = tmp_path / "20140505_eurusd_tick_quote.csv.gz"
    compressed = gzip.compress(_lean_lines(150_000), mtime=0)
    path.write_bytes(compressed[: int(len(compressed) * kept)])
    text, line, damage = _read_lines(path)
    assert 0 < line < 150_000 and text.count("\n") == line  # complete lines only
    assert text == _lean_lines(line).decode()
    assert damage == [
        f"{path}:{line + 1}: corrupt or truncated compression "
        "(Compressed file ended before the end-of-stream marker was reached)"
    ]


def test_reading_stops_at_the_line_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "20140505_eurusd_tick_quote.csv"
    path.write_bytes(_lean_lines(100_000) + b"1,1.3\xff,1.4\r\n" + _lean_lines(10))
    text, line, damage = _read_lines(path)
    assert line == 100_000
    assert text == _lean_lines(100_000).decode()
    assert damage == [f"{path}:100001: not UTF-8 text (invalid start byte)"]


def test_reading_an_intact_file_counts_its_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "20140505_eurusd_tick_quote.csv.gz"
    path.write_bytes(gzip.compress(_lean_lines(3) + b"21,1.1,1.2", mtime=0))
    assert _read_lines(path)[1:] == (4, [])


def _numbered(path: Path, *, take: int | None) -> tuple[list[tuple[int, str]], list[str]]:
    """Every (line number, line) handed out and every damage or refusal: iterating the
    lines one by one, or (``take``) ``TextLines.take`` of up to that many, then one
    line by iteration whenever it hands out none, as the LEAN reader does."""
    numbered: list[tuple[int, str]] = []
    with (
        collect_damage() as damage,
        collect_refused() as refused,
        open_text(path, NotATickFileError) as lines,
    ):
        while True:
            text, count = lines.take(take) if take else ("", 0)
            if not count:
                line = next(lines, None)
                if line is None:
                    break
                text, count = line, 1
            first = lines.line - count + 1
            pieces = text.splitlines(keepends=True)
            assert len(pieces) == count and all(p.endswith("\n") for p in pieces[:-1])
            numbered += zip(range(first, lines.line + 1), pieces, strict=True)
    return numbered, [str(d) for d in damage] + [f"{r.line}: {r.message}" for r in refused]


@pytest.mark.parametrize(
    "damage", ["truncated gzip", "not utf-8", "long lines", "no last line end", "intact"]
)
def test_lines_taken_in_blocks_are_the_lines_iterated_one_by_one(
    tmp_path: Path, damage: str
) -> None:
    """Blocks of lines span several reads of the file (about 3.6 MB here); what they hand
    out, and the damage and refusals they meet, are those of reading line by line."""
    good = _lean_lines(150_000)
    path = tmp_path / "20140505_eurusd_tick_quote.csv"
    if damage == "truncated gzip":
        path = path.with_suffix(".csv.gz")
        compressed = gzip.compress(good, mtime=0)
        path.write_bytes(compressed[: len(compressed) * 3 // 5])
    elif damage == "not utf-8":
        path.write_bytes(good[:2_000_000] + b"\xff" + good[2_000_000:])
    elif damage == "long lines":
        long = b"7" * 3_000_000 + b"\n"  # over the 1 MB default; a block read in parts
        path.write_bytes(good[:1_500_000] + long + good[1_500_000:] + long)
    elif damage == "no last line end":
        path.write_bytes(good + b"21,1.1,1.2")
    else:
        path.write_bytes(good)
    one_by_one = _numbered(path, take=None)
    assert len(one_by_one[0]) > 60_000
    assert bool(one_by_one[1]) == (damage not in ("intact", "no last line end"))
    for take in (125_000, 7_919):
        assert _numbered(path, take=take) == one_by_one


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
