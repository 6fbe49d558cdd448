from __future__ import annotations

import gzip
import math
import zipfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.ingest.ticks import (
    ImplausibleTimeError,
    NotATickFileError,
    Tick,
    ingest_ticks,
    inspect_tick_files,
    write_ticks,
)
from market_data_services.storage import ticks
from market_data_services.timeutil import format_ms

NOW = 1_700_000_000.0  # 2023-11-14, the injected wall clock


def stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        query = select(
            ticks.c.symbol, ticks.c.ts, ticks.c.seq, ticks.c.bid, ticks.c.ask, ticks.c.volume
        ).order_by(ticks.c.id)
        return [tuple(row) for row in connection.execute(query)]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def read_gz(path: Path) -> str:
    with gzip.open(path, "rt", newline="") as stream:
        return stream.read()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# -- real LEAN files ------------------------------------------------------------------------


def test_lean_file_times_are_read_in_the_given_zone(engine: Engine, ticks_dir: Path) -> None:
    path = ticks_dir / "lean_fxcm" / "eurusd" / "20140504_eurusd_tick_quote.csv.gz"
    report = ingest_ticks(engine, path, symbol="EUR/USD", tz="UTC-05:00", layout="lean")
    # The data README: Sunday 05-04's first tick at 14:00:51.815 UTC-5, 8,025 rows.
    assert report.first_ts is not None
    assert format_ms(report.first_ts) == "2014-05-04T19:00:51.815Z"
    assert (report.accepted, report.written, report.rejected) == (8_025, 8_025, 0)


def test_layout_is_told_from_the_content(engine: Engine, ticks_dir: Path) -> None:
    path = ticks_dir / "lean_oanda" / "nzdusd" / "20140504_nzdusd_tick_quote.csv.gz"
    report = ingest_ticks(engine, path, symbol="NZD/USD")
    assert report.accepted == 2_622


def test_ingesting_the_same_files_twice_adds_nothing(engine: Engine, ticks_dir: Path) -> None:
    folder = ticks_dir / "lean_oanda" / "eurusd"
    files = [
        folder / "20140504_eurusd_tick_quote.csv.gz",
        folder / "20140511_eurusd_tick_quote.csv.gz",
    ]
    first = ingest_ticks(engine, files, symbol="EUR/USD")
    before = stored(engine)
    second = ingest_ticks(engine, files, symbol="EUR/USD")
    assert (first.written, second.written, second.duplicates) == (1_164 + 2_643, 0, 1_164 + 2_643)
    assert stored(engine) == before


def test_equal_timestamps_are_numbered_in_file_order(engine: Engine, ticks_dir: Path) -> None:
    path = ticks_dir / "lean_oanda" / "nzdusd" / "20140504_nzdusd_tick_quote.csv.gz"
    ingest_ticks(engine, path, symbol="NZD/USD")
    lines = read_gz(path).split("\r\n")
    expected: list[tuple[int, float, float]] = []
    seen: dict[int, int] = {}
    for line in lines:
        ms, bid, ask = line.split(",")
        seq = seen[int(ms)] = seen.get(int(ms), -1) + 1
        expected.append((seq, float(bid), float(ask)))
    rows = stored(engine)
    assert [(r[2], r[3], r[4]) for r in rows] == expected
    assert any(seq > 0 for seq, _, _ in expected)


def test_crossed_and_locked_quotes_are_kept_and_counted(engine: Engine, ticks_dir: Path) -> None:
    path = ticks_dir / "lean_fxcm" / "eurusd" / "20140504_eurusd_tick_quote.csv.gz"
    rows = [line.split(",") for line in read_gz(path).splitlines()]
    crossed = sum(float(a) < float(b) for _, b, a in rows)
    locked = sum(float(a) == float(b) for _, b, a in rows)
    registry = CollectorRegistry()
    report = ingest_ticks(engine, path, symbol="EUR/USD", tz="UTC-05:00", registry=registry)
    assert (report.crossed, report.locked, report.accepted) == (crossed, locked, len(rows))
    assert crossed > 0 and locked > 0
    assert sample(registry, "mds_ticks_crossed_total") == crossed
    assert sample(registry, "mds_ticks_locked_total") == locked


def test_reject_crossed_rejects_crossed_but_keeps_locked(engine: Engine, ticks_dir: Path) -> None:
    path = ticks_dir / "lean_fxcm" / "eurusd" / "20140504_eurusd_tick_quote.csv.gz"
    registry = CollectorRegistry()
    report = ingest_ticks(
        engine, path, symbol="EUR/USD", tz="UTC-05:00", reject_crossed=True, registry=registry
    )
    assert report.rejected_by_reason == {"crossed": report.crossed}
    assert report.accepted == 8_025 - report.crossed
    assert all(ask >= bid for _, _, _, bid, ask, _ in stored(engine))  # type: ignore[operator]
    assert sample(registry, "mds_ticks_rejected_total", reason="crossed") == report.crossed


# -- bad input --------------------------------------------------------------------------------


def test_bad_rows_are_reported_with_file_and_line_and_good_rows_kept(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "mixed.csv",
        "timestamp,bid,ask,volume,symbol\n"
        "2023-11-14T10:00:00,1.10,1.11,5,EUR/USD\n"  # 2 good
        "2023-11-14T10:00:01,abc,1.11,5,EUR/USD\n"  # 3 malformed
        "2023-11-14T10:00:02,nan,1.11,5,EUR/USD\n"  # 4 not finite
        "2023-11-14T10:00:03,0,1.11,5,EUR/USD\n"  # 5 non-positive
        "2023-11-14T10:00:04,1.10,1.11,-1,EUR/USD\n"  # 6 negative volume
        "2031-01-01T00:00:00,1.10,1.11,5,EUR/USD\n"  # 7 future
        "2023-11-14T10:00:05,1.10,1.11,5,GBP/USD\n"  # 8 unknown symbol
        "2023-11-14T10:00:06,1.10\n"  # 9 malformed (fields)
        "2023-11-14T10:00:07,1.12,1.13,,EUR/USD\n",  # 10 good, no volume
    )
    registry = CollectorRegistry()
    report = ingest_ticks(engine, path, symbol="EUR/USD", registry=registry, wall_clock=lambda: NOW)
    where: dict[str, str] = {}
    for rejection in report.rejections:
        where.setdefault(rejection.reason, rejection.where)
    assert where == {
        "malformed": f"{path}:3",
        "not_finite": f"{path}:4",
        "non_positive_price": f"{path}:5",
        "negative_volume": f"{path}:6",
        "future_timestamp": f"{path}:7",
        "unknown_symbol": f"{path}:8",
    }
    assert report.rejected_by_reason["malformed"] == 2
    assert (report.accepted, report.rejected) == (2, 7)
    assert [(r[3], r[5]) for r in stored(engine)] == [(1.10, 5.0), (1.12, None)]
    assert sample(registry, "mds_ticks_rejected_total", reason="malformed") == 2
    assert sample(registry, "mds_ticks_rejected_total", reason="future_timestamp") == 1
    assert sample(registry, "mds_ticks_written_total") == 2


def test_rejections_are_listed_in_file_order_whether_parsing_or_checking_found_them(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "order.csv",
        "timestamp,bid,ask\n"
        "2023-11-14T10:00:00,0,1.11\n"  # 2 non-positive (found by the checks)
        "2023-11-14T10:00:01,abc,1.11\n"  # 3 malformed (found by the parser)
        "2023-11-14T10:00:02,1.10,1.11\n"  # 4 good
        "2031-01-01T00:00:00,1.10,1.11\n"  # 5 future (checks)
        "2023-11-14T10:00:03,1.10\n",  # 6 malformed (parser)
    )
    report = ingest_ticks(engine, path, symbol="EUR/USD", wall_clock=lambda: NOW)
    assert [(r.line, r.reason) for r in report.rejections] == [
        (2, "non_positive_price"),
        (3, "malformed"),
        (5, "future_timestamp"),
        (6, "malformed"),
    ]


def test_a_bad_row_in_a_lean_file_is_named_and_the_rest_kept(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "20140501_eurusd_tick_quote.csv",
        "1000,1.1,1.2\r\n2000,1.1,oops\r\n3000,1.1,1.2\r\n3500.5,1.1,1.2\r\n4000,1.3,1.4",
    )
    report = ingest_ticks(engine, path, symbol="EUR/USD", layout="lean")
    assert sorted(r.where for r in report.rejections) == [f"{path}:2", f"{path}:4"]
    assert [r[1] for r in stored(engine)] == [
        1_398_902_401_000,
        1_398_902_403_000,
        1_398_902_404_000,
    ]


def test_a_file_that_is_not_tick_data_stops_before_anything_is_written(
    engine: Engine, tmp_path: Path, ticks_dir: Path
) -> None:
    good = ticks_dir / "lean_oanda" / "nzdusd" / "20140504_nzdusd_tick_quote.csv.gz"
    bad = write(tmp_path / "notes.csv", "name,age\nalice,30\n")
    with pytest.raises(NotATickFileError, match=r"notes\.csv: not a tick file"):
        ingest_ticks(engine, [good, bad], symbol="NZD/USD")
    assert stored(engine) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("picture.csv", b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        ("rows.csv", b"1000,1.1,1.2\n", "date in the file name"),
        ("empty-header.csv", b"timestamp,bid,ask,price\n", "unknown column 'price'"),
    ],
)
def test_not_a_tick_file_says_why(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotATickFileError, match=message):
        inspect_tick_files(path)


def test_forcing_the_wrong_layout_is_a_clear_error(tmp_path: Path) -> None:
    plain = write(tmp_path / "20140501_x.csv", "timestamp,bid,ask\n1,1.1,1.2\n")
    with pytest.raises(NotATickFileError, match="lean files have none"):
        inspect_tick_files(plain, layout="lean")
    lean = write(tmp_path / "20140501_y.csv", "1000,1.1,1.2\n")
    with pytest.raises(NotATickFileError, match="try --layout lean"):
        inspect_tick_files(lean, layout="plain")


# -- formats ----------------------------------------------------------------------------------


def test_plain_times_without_offset_are_read_in_the_given_zone(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "ny.csv",
        "bid,ask,timestamp\n"
        "1.1,1.2,2014-01-15T12:00:00\n"  # EST: 17:00Z
        "1.1,1.2,2014-07-15T12:00:00\n"  # EDT: 16:00Z
        "1.1,1.2,2014-07-15T12:00:00+00:00\n"  # explicit offset wins
        "1.1,1.2,1405440000123\n",  # epoch ms
    )
    ingest_ticks(engine, path, symbol="X", tz="America/New_York", wall_clock=lambda: NOW)
    assert [format_ms(r[1]) for r in stored(engine)] == [  # type: ignore[arg-type]
        "2014-01-15T17:00:00.000Z",
        "2014-07-15T16:00:00.000Z",
        "2014-07-15T12:00:00.000Z",
        "2014-07-15T16:00:00.123Z",
    ]


# -- time units -------------------------------------------------------------------------------

#: 2014-05-01T00:00:00Z and 1.5 s later, in each epoch unit.
EPOCHS = {
    "s": ("1398902400", "1398902401.5"),
    "ms": ("1398902400000", "1398902401500"),
    "us": ("1398902400000000", "1398902401500000"),
    "ns": ("1398902400000000000", "1398902401500000000"),
}


@pytest.mark.parametrize("unit", list(EPOCHS))
def test_epoch_times_in_any_unit_are_told_by_magnitude_or_read_as_stated(
    engine: Engine, tmp_path: Path, unit: str
) -> None:
    first, second = EPOCHS[unit]
    path = write(tmp_path / "t.csv", f"timestamp,bid,ask\n{first},1.1,1.2\n{second},1.1,1.2\n")
    told = ingest_ticks(engine, path, symbol="EUR/USD", wall_clock=lambda: NOW)
    assert [r[1] for r in stored(engine)] == [1_398_902_400_000, 1_398_902_401_500]
    stated = ingest_ticks(engine, path, symbol="EUR/USD", time_unit=unit, wall_clock=lambda: NOW)
    assert (told.written, stated.duplicates) == (2, 2)


def test_epoch_seconds_read_as_ms_are_refused_before_anything_is_written(
    engine: Engine, tmp_path: Path
) -> None:
    good = write(tmp_path / "a.csv", "timestamp,bid,ask\n1398902400000,1.1,1.2\n")
    seconds = write(tmp_path / "b.csv", "timestamp,bid,ask\n1398902400,1.1,1.2\n")
    with pytest.raises(ImplausibleTimeError) as caught:
        ingest_ticks(engine, [good, seconds], symbol="X", time_unit="ms", wall_clock=lambda: NOW)
    assert str(caught.value) == (
        f"{seconds}:2: timestamp 1398902400 read as epoch ms is 1970-01-17, before 1990-01-01; "
        "looks like epoch s: use --time-unit s"
    )
    assert stored(engine) == []


@pytest.mark.parametrize(
    ("first", "message"),
    [
        (
            "20140501",
            "timestamp 20140501 read as epoch s (auto) is 1970-08-22, before "
            "1990-01-01; looks like a YYYYMMDD date: write it as 2014-05-01",
        ),
        (
            "20140501133000",
            "timestamp 20140501133000 read as epoch ms (auto) is "
            "2608-03-24T15:38:53.000Z, in the future (after 2023-11-14T23:13:20.000Z); "
            "looks like a YYYYMMDDHHMMSS time: write it as 2014-05-01T13:30:00",
        ),
        ("1985-06-01T00:00:00", "timestamp 1985-06-01T00:00:00 is before 1990-01-01"),
    ],
)
def test_a_file_whose_first_time_is_implausible_is_refused_saying_what_it_looks_like(
    engine: Engine, tmp_path: Path, first: str, message: str
) -> None:
    path = write(tmp_path / "t.csv", f"timestamp,bid,ask\nnot a time,1,2\n{first},1.1,1.2\n")
    with pytest.raises(ImplausibleTimeError) as caught:
        ingest_ticks(engine, path, symbol="X", wall_clock=lambda: NOW)
    assert str(caught.value) == f"{path}:3: {message}"
    assert stored(engine) == []


def test_a_later_row_in_another_unit_is_rejected_and_the_rest_kept(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "t.csv",
        "timestamp,bid,ask\n"
        "2014-05-01T00:00:00Z,1.1,1.2\n"  # 2 ISO: the unit is not known yet
        "1398902401000,1.1,1.2\n"  # 3 the first epoch number: ms
        "1398902402,1.1,1.2\n"  # 4 seconds among ms: 1970
        "1398902403000,1.1,1.2\n",  # 5
    )
    registry = CollectorRegistry()
    report = ingest_ticks(engine, path, symbol="X", registry=registry, wall_clock=lambda: NOW)
    assert [str(r) for r in report.rejections] == [
        f"{path}:4: timestamp 1398902402 read as epoch ms (auto) is 1970-01-17, "
        "before 1990-01-01; looks like epoch s: use --time-unit s"
    ]
    assert [r[1] for r in stored(engine)] == [
        1_398_902_400_000,
        1_398_902_401_000,
        1_398_902_403_000,
    ]
    assert sample(registry, "mds_ticks_rejected_total", reason="timestamp_out_of_range") == 1


def test_lean_files_keep_ms_since_midnight_and_refuse_another_unit_or_an_early_date(
    engine: Engine, tmp_path: Path
) -> None:
    lean = write(tmp_path / "20140501_x.csv", "1000,1.1,1.2\n")
    assert ingest_ticks(engine, lean, symbol="X", time_unit="ms").written == 1
    with pytest.raises(ValueError, match="lean files hold milliseconds since midnight"):
        ingest_ticks(engine, lean, symbol="X", time_unit="s")
    early = write(tmp_path / "19700101_x.csv", "1000,1.1,1.2\n")
    with pytest.raises(ImplausibleTimeError, match="the date in the file name, 1970-01-01, is"):
        ingest_ticks(engine, early, symbol="X")
    assert [r[1] for r in stored(engine)] == [1_398_902_401_000]


def test_symbol_column_names_the_symbol_of_each_row(engine: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path / "two.csv",
        "timestamp,bid,ask,symbol\n1699999000000,1.1,1.2,EUR/USD\n1699999000000,0.8,0.9,NZD/USD\n",
    )
    report = ingest_ticks(engine, path, wall_clock=lambda: NOW)
    assert report.symbols == {"EUR/USD": 1, "NZD/USD": 1}
    assert sorted((r[0], r[2]) for r in stored(engine)) == [("EUR/USD", 0), ("NZD/USD", 0)]


def test_interleaved_symbols_keep_file_order_numbering_and_missing_volumes(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "mixed.csv",
        "timestamp,bid,ask,volume,symbol\n"
        "1699999000000,1.1,1.2,5,EUR/USD\n"
        "1699999000000,0.8,0.9,,NZD/USD\n"
        "1699999000000,1.3,1.4,,EUR/USD\n"
        "1699999000001,0.7,0.8,2.5,NZD/USD\n"
        "1699999000000,0.6,0.7,1,NZD/USD\n",
    )
    report = ingest_ticks(engine, path, wall_clock=lambda: NOW)
    assert report.written == 5
    by_symbol: dict[object, list[tuple[object, ...]]] = {}
    for row in stored(engine):  # id order
        by_symbol.setdefault(row[0], []).append(row[1:])
    assert by_symbol == {
        "EUR/USD": [(1699999000000, 0, 1.1, 1.2, 5.0), (1699999000000, 1, 1.3, 1.4, None)],
        "NZD/USD": [
            (1699999000000, 0, 0.8, 0.9, None),
            (1699999000001, 0, 0.7, 0.8, 2.5),
            (1699999000000, 1, 0.6, 0.7, 1.0),
        ],
    }
    again = ingest_ticks(engine, path, wall_clock=lambda: NOW)
    assert (again.written, again.duplicates) == (0, 5)


def test_a_file_without_symbol_column_needs_a_symbol(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "nosym.csv", "timestamp,bid,ask\n1699999000000,1.1,1.2\n")
    with pytest.raises(ValueError, match="no symbol column"):
        ingest_ticks(engine, path)


def test_zip_with_one_member_is_read_and_with_two_refused(engine: Engine, tmp_path: Path) -> None:
    one = tmp_path / "20140501_quote.zip"
    with zipfile.ZipFile(one, "w") as archive:
        archive.writestr("20140501_eurusd_tick_quote.csv", "1000,1.1,1.2\r\n2000,1.1,1.2")
    assert ingest_ticks(engine, one, symbol="EUR/USD", layout="lean").accepted == 2
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "timestamp,bid,ask\n")
        archive.writestr("b.csv", "timestamp,bid,ask\n")
    with pytest.raises(NotATickFileError, match="2 files; expected exactly one"):
        ingest_ticks(engine, two, symbol="EUR/USD")


def test_directories_are_searched_for_tick_files(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "day"
    (folder / "sub").mkdir(parents=True)
    write(folder / "20140501_a.csv", "1000,1.1,1.2")
    with gzip.open(folder / "sub" / "20140502_a.csv.gz", "wt") as stream:
        stream.write("1000,1.1,1.2\n")
    write(folder / "README.md", "# not data")
    report = ingest_ticks(engine, folder, symbol="X", layout="lean")
    assert (report.files, report.accepted) == (2, 2)


# -- write_ticks -------------------------------------------------------------------------------


def test_write_ticks_in_batch_numbering_validates_stores_and_is_idempotent(
    engine: Engine,
) -> None:
    base = 1_699_999_000_000
    batch = [
        Tick("EUR/USD", base, 1.10, 1.11, 2.0),
        ("EUR/USD", base, 1.10, 1.12, None),
        ("EUR/USD", base + 5, math.nan, 1.12, None),
        ("EUR/USD", "soon", 1.10, 1.12, None),
        ("GBP/USD", base, 1.30, 1.31, None),
    ]
    first = write_ticks(
        engine, batch, symbols=["EUR/USD"], wall_clock=lambda: NOW, numbering="batch"
    )
    second = write_ticks(
        engine, batch, symbols=["EUR/USD"], wall_clock=lambda: NOW, numbering="batch"
    )
    assert (first.written, first.rejected, second.written, second.duplicates) == (2, 3, 0, 2)
    assert sorted(first.rejected_by_reason.items()) == [
        ("malformed", 1),
        ("not_finite", 1),
        ("unknown_symbol", 1),
    ]
    assert [(r[2], r[4], r[5]) for r in stored(engine)] == [(0, 1.11, 2.0), (1, 1.12, None)]


def test_unknown_symbol_rejections_never_become_metric_labels(engine: Engine) -> None:
    registry = CollectorRegistry()
    write_ticks(
        engine,
        [(f"SYM{i}", 1_699_999_000_000, 1.0, 1.1) for i in range(5)],
        symbols=["EUR/USD"],
        registry=registry,
        wall_clock=lambda: NOW,
    )
    labels = {
        tuple(sorted(s.labels.items()))
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "mds_ticks_rejected_total"
    }
    assert all(dict(label)["reason"] != "SYM0" for label in labels)
    assert sample(registry, "mds_ticks_rejected_total", reason="unknown_symbol") == 5


def test_write_ticks_appends_equal_times_split_over_calls_in_arrival_order(
    engine: Engine,
) -> None:
    base = 1_699_999_000_000
    write_ticks(engine, [("X", base, 1.0, 1.1), ("X", base, 1.0, 1.2)], wall_clock=lambda: NOW)
    report = write_ticks(
        engine, [("X", base, 1.0, 1.3), ("X", base + 1, 1.0, 1.4)], wall_clock=lambda: NOW
    )
    assert report.written == 2
    assert [(r[1] - base, r[2], r[4]) for r in stored(engine)] == [  # type: ignore[operator]
        (0, 0, 1.1),
        (0, 1, 1.2),
        (0, 2, 1.3),
        (1, 0, 1.4),
    ]


def test_write_ticks_refuses_an_unknown_numbering(engine: Engine) -> None:
    with pytest.raises(ValueError, match="valid: append, batch"):
        write_ticks(engine, [], numbering="file")
