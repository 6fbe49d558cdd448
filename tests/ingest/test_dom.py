from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from market_data_services.ingest.dom import (
    BookSnapshot,
    ImplausibleTimeError,
    NotABookFileError,
    ingest_dom,
    inspect_dom_files,
    write_dom,
)
from market_data_services.market.book import pack_levels, unpack_levels
from market_data_services.storage import dom_snapshots
from tests.books import Book, bybit_books, random_books, tardis_books

NOW = 1_700_000_000.0  # 2023-11-14, the injected wall clock
TARDIS_25 = "tardis_binance-futures_book_snapshot_25_BTCUSDT.csv.gz"
TARDIS_5 = "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv.gz"
BYBIT = "bybit_2024-12-01_XRPUSDT_ob500.data.gz"
BINANCE = "binance_btcusdt-depth-snap.csv.gz"


def stored(engine: Engine) -> list[Book]:
    table = dom_snapshots
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.symbol, table.c.ts, table.c.bids, table.c.asks).order_by(table.c.id)
        ).all()
    return [Book(s, t, unpack_levels(b), unpack_levels(a)) for s, t, b, a in rows]


def assert_same_books(actual: list[Book], expected: list[Book]) -> None:
    assert [(b.symbol, b.ts) for b in actual] == [(b.symbol, b.ts) for b in expected]
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(got.bids, want.bids)
        np.testing.assert_array_equal(got.asks, want.asks)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def snap(ts: object, bids: object, asks: object, symbol: str = "EUR/USD") -> dict[str, object]:
    return {"symbol": symbol, "ts": ts, "bids": bids, "asks": asks}


# -- real files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [TARDIS_25, TARDIS_5])
def test_tardis_snapshots_are_stored_level_for_level(
    engine: Engine, orderbook_dir: Path, name: str
) -> None:
    report = ingest_dom(engine, orderbook_dir / name)
    expected = tardis_books(orderbook_dir / name)
    assert (report.accepted, report.written, report.rejected) == (10, 10, 0)
    assert_same_books(stored(engine), expected)
    # Microsecond exchange timestamps become milliseconds: the README's first one.
    assert stored(engine)[0].ts == 1_598_918_403_696


def test_bybit_deltas_rebuild_the_book_and_every_message_is_a_snapshot(
    engine: Engine, orderbook_dir: Path
) -> None:
    report = ingest_dom(engine, orderbook_dir / BYBIT)
    expected = bybit_books(orderbook_dir / BYBIT)
    assert (report.accepted, report.rejected) == (50, 0)
    assert_same_books(stored(engine), expected)
    assert len(expected[0].bids) == 500
    assert expected[-1].bids[0, 0] != expected[0].bids[0, 0]  # the deltas moved the book


def test_a_file_with_bids_only_is_reported_as_one_sided_not_stored(
    engine: Engine, orderbook_dir: Path
) -> None:
    registry = CollectorRegistry()
    path = orderbook_dir / BINANCE
    report = ingest_dom(engine, path, registry=registry)
    assert (report.accepted, report.rejected) == (0, 1)
    [rejection] = report.rejections
    assert rejection.where == f"{path}:2"
    assert rejection.reason == "one_sided"
    assert "bids only (100 levels), no asks" in rejection.message
    assert stored(engine) == []
    assert sample(registry, "mds_dom_snapshots_rejected_total", reason="one_sided") == 1


def test_loading_the_same_file_twice_adds_nothing(engine: Engine, orderbook_dir: Path) -> None:
    first = ingest_dom(engine, orderbook_dir / BYBIT)
    before = stored(engine)
    second = ingest_dom(engine, orderbook_dir / BYBIT)
    assert (first.written, second.written, second.duplicates) == (50, 0, 50)
    assert_same_books(stored(engine), before)


# -- bad input --------------------------------------------------------------------------------


def test_bad_books_are_rejected_with_reason_and_line_and_good_ones_kept(
    engine: Engine, tmp_path: Path
) -> None:
    t = 1_699_999_000_000
    good_bids, good_asks = [[1.0849, 2.5], [1.0848, 1.0]], [[1.0851, 1.0], [1.0852, 3.0]]
    path = jsonl(
        tmp_path / "books.jsonl",
        [
            snap(t, good_bids, good_asks),  # 1 good
            snap(t + 1, [], []),  # 2 empty
            snap(t + 2, good_bids, []),  # 3 one-sided
            snap(t + 3, [[1.0849, "NaN"]], good_asks),  # 4 NaN size
            snap(t + 4, [[-1.0849, 1.0]], good_asks),  # 5 negative price
            snap(t + 5, [[1.0849, -2.0]], good_asks),  # 6 negative size
            snap(t + 6, [[1.0848, 1.0], [1.0849, 1.0]], good_asks),  # 7 unsorted bids
            snap(t + 7, good_bids, [[1.0851, 1.0], [1.0851, 2.0]]),  # 8 duplicated ask
            "{not json",  # 9 malformed
            {"symbol": "EUR/USD", "ts": t + 9, "bids": good_bids},  # 10 no asks key
            snap("2031-01-01T00:00:00Z", good_bids, good_asks),  # 11 future
            snap(t + 11, good_bids, good_asks, symbol="GBP/USD"),  # 12 unknown symbol
            snap(t + 12, [[1.0852, 1.0]], [[1.0851, 1.0]]),  # 13 crossed: kept
            snap(t + 13, [[1.0851, 1.0]], [[1.0851, 1.0]]),  # 14 locked: kept
            snap("2023-11-14T21:36:53.123Z", good_bids, good_asks),  # 15 good, ISO time
        ],
    )
    registry = CollectorRegistry()
    report = ingest_dom(
        engine, path, symbols=["EUR/USD"], registry=registry, wall_clock=lambda: NOW
    )
    where = {r.reason: r.where for r in report.rejections}
    assert where == {
        "empty_book": f"{path}:2",
        "one_sided": f"{path}:3",
        "not_finite": f"{path}:4",
        "non_positive_price": f"{path}:5",
        "non_positive_size": f"{path}:6",
        "unsorted_levels": f"{path}:7",
        "duplicate_level": f"{path}:8",
        "malformed": f"{path}:10",  # the last of the two
        "future_timestamp": f"{path}:11",
        "unknown_symbol": f"{path}:12",
    }
    assert report.rejected_by_reason["malformed"] == 2
    messages = {r.reason: r.message for r in report.rejections}
    assert messages["unsorted_levels"] == (
        "EUR/USD at 2023-11-14T21:56:40.006Z: bid level 2: price 1.0849 is not below "
        "level 1's 1.0848 (bids descend)"
    )
    assert "missing key 'asks'" in messages["malformed"]
    assert (report.accepted, report.rejected, report.crossed, report.locked) == (4, 11, 1, 1)
    assert [b.ts for b in stored(engine)] == [t, t + 12, t + 13, 1_699_997_813_123]
    assert sample(registry, "mds_dom_snapshots_rejected_total", reason="duplicate_level") == 1
    assert sample(registry, "mds_dom_books_crossed_total") == 1
    assert sample(registry, "mds_dom_books_locked_total") == 1
    assert sample(registry, "mds_dom_snapshots_written_total") == 4


def test_reject_crossed_rejects_crossed_books_but_keeps_locked(
    engine: Engine, tmp_path: Path
) -> None:
    t = 1_699_999_000_000
    path = jsonl(
        tmp_path / "crossed.jsonl",
        [
            snap(t, [[1.0852, 1.0]], [[1.0851, 1.0]]),
            snap(t + 1, [[1.0851, 1.0]], [[1.0851, 1.0]]),
        ],
    )
    report = ingest_dom(engine, path, reject_crossed=True, wall_clock=lambda: NOW)
    assert report.rejected_by_reason == {"crossed": 1}
    assert "best ask 1.0851 below best bid 1.0852" in report.rejections[0].message
    assert [b.ts for b in stored(engine)] == [t + 1]


def test_a_delta_before_any_snapshot_and_one_emptying_a_side_are_reported_with_their_line(
    engine: Engine, tmp_path: Path
) -> None:
    def message(kind: str, ts: int, bids: list[list[str]], asks: list[list[str]]) -> str:
        data = {"s": "XRPUSDT", "b": bids, "a": asks, "u": 1, "seq": 1}
        return json.dumps({"topic": "orderbook.50.XRPUSDT", "type": kind, "ts": ts, "data": data})

    t = 1_699_999_000_000
    path = tmp_path / "stream.data"
    path.write_text(
        "\n".join(
            [
                message("delta", t, [["1.95", "10"]], []),  # 1 before any snapshot
                message("snapshot", t + 1, [["1.95", "10"], ["1.94", "5"]], [["1.96", "7"]]),
                message("delta", t + 2, [["1.94", "0"]], [["1.97", "3"]]),  # 3 fine
                message("delta", t + 3, [], [["1.96", "0"], ["1.97", "0"]]),  # 4 empties asks
                message("delta", t + 4, [], [["1.98", "2"]]),  # 5 asks back
                message("delta", t + 5, [["1.93", "-1"]], []),  # 6 negative size: not applied
            ]
        )
        + "\n"
    )
    report = ingest_dom(engine, path, wall_clock=lambda: NOW)
    assert [(r.reason, r.line) for r in report.rejections] == [
        ("delta_before_snapshot", 1),
        ("one_sided", 4),
        ("non_positive_size", 6),
    ]
    books = stored(engine)
    assert [b.ts for b in books] == [t + 1, t + 2, t + 4]
    np.testing.assert_array_equal(books[1].asks, [[1.96, 7.0], [1.97, 3.0]])
    np.testing.assert_array_equal(books[2].bids, [[1.95, 10.0]])
    np.testing.assert_array_equal(books[2].asks, [[1.98, 2.0]])


def test_a_file_that_is_not_book_data_stops_before_anything_is_written(
    engine: Engine, tmp_path: Path, orderbook_dir: Path
) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\nalice,30\n")
    with pytest.raises(NotABookFileError, match=r"notes\.csv: not an order-book file"):
        ingest_dom(engine, [orderbook_dir / BYBIT, notes])
    assert stored(engine) == []


def test_forcing_the_wrong_layout_names_the_right_one(orderbook_dir: Path) -> None:
    with pytest.raises(NotABookFileError, match="try --layout tardis"):
        inspect_dom_files(orderbook_dir / TARDIS_5, layout="bybit")


# -- formats ----------------------------------------------------------------------------------


def test_json_times_without_offset_are_read_in_the_given_zone(
    engine: Engine, tmp_path: Path
) -> None:
    book = [[1.1, 1.0]], [[1.2, 1.0]]
    path = jsonl(
        tmp_path / "ny.jsonl",
        [
            snap("2014-01-15T12:00:00", *book),  # EST: 17:00Z
            snap("2014-07-15T12:00:00", *book),  # EDT: 16:00Z
            snap(1_405_440_000_123, *book),  # epoch ms
        ],
    )
    ingest_dom(engine, path, tz="America/New_York", wall_clock=lambda: NOW)
    assert [b.ts for b in stored(engine)] == [
        1_389_805_200_000,
        1_405_440_000_000,
        1_405_440_000_123,
    ]


def test_a_zipped_jsonl_file_in_a_directory_is_found_and_read(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    line = json.dumps(snap(1_699_999_000_000, [[1.1, 1.0]], [[1.2, 1.0]]))
    with zipfile.ZipFile(folder / "day.zip", "w") as archive:
        archive.writestr("day.jsonl", line + "\n")
    with gzip.open(folder / "other.jsonl.gz", "wt") as stream:
        stream.write(json.dumps(snap(1_699_999_000_001, [[1.1, 1.0]], [[1.2, 1.0]])) + "\n")
    (folder / "README.md").write_text("# not data")
    report = ingest_dom(engine, folder, wall_clock=lambda: NOW)
    assert (report.files, report.accepted) == (2, 2)


# -- write_dom ----------------------------------------------------------------------------------


def test_write_dom_stores_exact_levels_validates_and_is_idempotent(engine: Engine) -> None:
    books = random_books(7, 30)
    records: list[object] = [BookSnapshot(b.symbol, b.ts, b.bids, b.asks) for b in books]
    records += [("EUR/USD", "soon", [], []), ("EUR/USD", 1, [[1.0, 1.0, 1.0]], [])]
    first = write_dom(engine, records, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    second = write_dom(engine, records, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    assert (first.written, first.rejected_by_reason) == (30, {"malformed": 2})
    assert (second.written, second.duplicates) == (0, 30)
    assert_same_books(stored(engine), books)


def test_packed_levels_round_trip_exactly() -> None:
    levels = np.array([[1.08491, 2.5], [1.0848, 1e-9], [0.1 + 0.2, 3.0]])
    assert pack_levels(levels)[:8] == np.float64(1.08491).tobytes()  # little-endian float64
    np.testing.assert_array_equal(unpack_levels(pack_levels(levels)), levels)
    with pytest.raises(ValueError, match="multiple of 16 bytes"):
        unpack_levels(b"\x00" * 15)


def test_binance_snap_then_set_rows_rebuild_the_book(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "depth.csv"
    header = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"
    path.write_text(
        header
        + "BTCUSDT,1699999000000,1,1,b,snap,100.0,1.0,-1\n"  # 2: a snapshot of 2+2 levels
        + "BTCUSDT,1699999000000,1,1,b,snap,99.0,2.0,-1\n"
        + "BTCUSDT,1699999000000,1,1,a,snap,102.0,3.0,-1\n"
        + "BTCUSDT,1699999000000,1,1,a,snap,101.0,4.0,-1\n"  # out of order: sorted
        + "BTCUSDT,1699999000100,2,2,b,set,100.0,0,1\n"  # 6: removes the best bid
        + "BTCUSDT,1699999000100,2,2,a,set,100.5,5.0,1\n"
        + "BTCUSDT,1699999000200,3,3,b,set,98.0,-1,2\n"  # 8: negative: not applied
    )
    report = ingest_dom(engine, path, wall_clock=lambda: NOW)
    assert [(r.reason, r.line) for r in report.rejections] == [("non_positive_size", 8)]
    books = stored(engine)
    assert [b.ts for b in books] == [1_699_999_000_000, 1_699_999_000_100]
    np.testing.assert_array_equal(books[0].asks, [[101.0, 4.0], [102.0, 3.0]])
    np.testing.assert_array_equal(books[1].bids, [[99.0, 2.0]])
    np.testing.assert_array_equal(books[1].asks, [[100.5, 5.0], [101.0, 4.0], [102.0, 3.0]])


# -- time units -------------------------------------------------------------------------------


def test_jsonl_times_in_seconds_are_told_by_magnitude_and_a_stated_unit_is_kept(
    engine: Engine, tmp_path: Path
) -> None:
    bids, asks = [[1.0849, 2.5]], [[1.0851, 1.0]]
    path = jsonl(
        tmp_path / "s.jsonl", [snap(1_699_999_000, bids, asks), snap(1_699_999_000.25, bids, asks)]
    )
    report = ingest_dom(engine, path, wall_clock=lambda: NOW)
    assert report.rejected == 0
    assert [b.ts for b in stored(engine)] == [1_699_999_000_000, 1_699_999_000_250]
    with pytest.raises(ImplausibleTimeError) as caught:
        ingest_dom(engine, path, time_unit="ms", wall_clock=lambda: NOW)
    assert str(caught.value) == (
        f"{path}:1: ts 1699999000 read as epoch ms is 1970-01-20, before 1990-01-01; "
        "looks like epoch s: use --time-unit s"
    )


def test_a_binance_row_of_another_unit_is_rejected_not_stored_as_1970(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "depth.csv"
    header = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"
    path.write_text(
        header
        + "BTCUSDT,1699999000000,1,1,b,snap,100.0,1.0,-1\n"
        + "BTCUSDT,1699999000000,1,1,a,snap,101.0,4.0,-1\n"
        + "BTCUSDT,1699999001,2,2,b,set,99.0,1.0,1\n"  # 4: seconds in a ms file
        + "BTCUSDT,1699999002000,3,3,a,set,102.0,1.0,2\n"
    )
    registry = CollectorRegistry()
    report = ingest_dom(engine, path, registry=registry, wall_clock=lambda: NOW)
    assert [(r.reason, r.line) for r in report.rejections] == [("timestamp_out_of_range", 4)]
    assert "looks like epoch s" in report.rejections[0].message
    assert [b.ts for b in stored(engine)] == [1_699_999_000_000, 1_699_999_002_000]
    assert (
        sample(registry, "mds_dom_snapshots_rejected_total", reason="timestamp_out_of_range") == 1
    )


def test_a_tardis_file_read_in_the_wrong_unit_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "tardis.csv"
    path.write_text(
        "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,"
        "bids[0].price,bids[0].amount\n"
        "binance,BTCUSDT,1598918403696000,1598918403700000,11650.0,1.0,11649.0,2.0\n"
    )
    with pytest.raises(ImplausibleTimeError, match="looks like epoch us: use --time-unit us"):
        ingest_dom(engine, path, time_unit="ms", wall_clock=lambda: NOW)
    assert ingest_dom(engine, path, wall_clock=lambda: NOW).written == 1
    assert [b.ts for b in stored(engine)] == [1_598_918_403_696]
