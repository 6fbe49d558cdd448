"""Limits on one row (``ReadLimits``, the ``[ingest]`` keys): a line, CSV field or book
side over its limit is one rejected row with its own reason, file and line; the rows
around it load, and nothing about the file is held whole."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from market_data_services.app.cli import main
from market_data_services.ingest import ReadLimits, ingest_dom, ingest_ticks
from market_data_services.ingest.files import collect_damage, csv_data_rows
from market_data_services.ingest.layouts.ticks.common import NotATickFileError

GOOD = "1699999000000,1.1,1.2\n1699999001000,1.1,1.2\n"
AFTER = "1699999002000,1.1,1.2\n1699999003000,1.1,1.2\n"


def _rejected(registry: CollectorRegistry, metric: str, reason: str) -> float | None:
    return registry.get_sample_value(f"{metric}_total", {"reason": reason})


def test_an_over_long_line_is_one_rejected_row_and_the_lines_after_it_load(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text(
        "timestamp,bid,ask\n" + GOOD + "1699999001500," + "9" * 2_000_000 + "\n" + AFTER
    )
    registry = CollectorRegistry()
    report = ingest_ticks(engine, path, symbol="EUR/USD", registry=registry)
    assert report.accepted == 4
    assert report.rejected_by_reason == {"line_too_long": 1}
    [rejection] = report.rejections
    assert str(rejection) == (
        f"{path}:4: line of 2,000,015 bytes is over the limit of 1,048,576 "
        "(ingest.max_line_bytes); not read"
    )
    assert _rejected(registry, "mds_ticks_rejected", "line_too_long") == 1
    assert not report.failed_files


def test_a_lean_gzip_bomb_of_one_line_is_one_rejected_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "20231114_eurusd_tick_quote.csv.gz"
    with gzip.open(path, "wt") as out:  # 30 MB of one line without an end, after good rows
        out.write("1000,1.1,1.2\r\n2000,1.1,1.2\r\n")
        for _ in range(30):
            out.write("7" * 1_000_000)
    report = ingest_ticks(engine, path, symbol="EUR/USD")
    assert report.accepted == 2
    assert [(r.line, r.reason) for r in report.rejections] == [(3, "line_too_long")]
    assert "line of 30,000,000 bytes" in report.rejections[0].message


def test_lines_after_a_refused_one_keep_their_numbers_in_every_message(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "20231114_eurusd_tick_quote.csv"
    path.write_text("1000,1.1,1.2\n" + "2000,1.1," + "1" * 100 + "\n3000,1.1,x\n4000,1.1,1.2\n")
    report = ingest_ticks(engine, path, symbol="EUR/USD", limits=ReadLimits(max_line_bytes=50))
    assert [(r.line, r.reason) for r in report.rejections] == [
        (2, "line_too_long"),
        (3, "malformed"),
    ]
    assert report.accepted == 2


@pytest.mark.parametrize("size", [70_000, 200_000])  # under and over csv's own 128 KiB limit
def test_an_over_long_csv_field_is_one_rejected_row(
    engine: Engine, tmp_path: Path, size: int
) -> None:
    path = tmp_path / "ticks.csv"
    field = '"' + "9" * size + '"'
    path.write_text("timestamp,bid,ask\n" + GOOD + f"1699999001500,1.1,{field}\n" + AFTER)
    registry = CollectorRegistry()
    report = ingest_ticks(engine, path, symbol="EUR/USD", registry=registry)
    assert report.accepted == 4
    [rejection] = report.rejections
    assert (rejection.line, rejection.reason) == (4, "field_too_long")
    assert rejection.message.endswith(
        "is over the limit of 65,536 characters (ingest.max_field_chars)"
    )
    assert _rejected(registry, "mds_ticks_rejected", "field_too_long") == 1


def test_outside_the_pipeline_an_over_long_line_ends_the_file_as_damage(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,bid,ask\n" + GOOD + "x" * 2_000_000 + "\n" + AFTER)
    with collect_damage() as damage:
        rows = list(csv_data_rows(path, NotATickFileError))
    assert [line for line, _ in rows] == [2, 3]
    assert [str(d) for d in damage] == [
        f"{path}:4: line of 2,000,001 bytes is over the limit of 1,048,576 "
        "(ingest.max_line_bytes); not read"
    ]


def _jsonl_book(ts: int, depth: int) -> str:
    bids = [[1.0 - i * 0.001, 1.0] for i in range(depth)]
    asks = [[1.1 + i * 0.001, 1.0] for i in range(depth)]
    return json.dumps({"symbol": "EUR/USD", "ts": ts, "bids": bids, "asks": asks}) + "\n"


def test_a_book_with_too_many_levels_is_rejected_and_the_next_loads(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "books.jsonl"
    path.write_text(
        _jsonl_book(1_699_999_000_000, 5)
        + _jsonl_book(1_699_999_001_000, 11)
        + _jsonl_book(1_699_999_002_000, 10)
    )
    registry = CollectorRegistry()
    report = ingest_dom(engine, path, registry=registry, limits=ReadLimits(max_book_levels=10))
    assert report.accepted == 2
    assert [str(r) for r in report.rejections] == [
        f"{path}:2: bids has 11 levels, over the limit of 10 (ingest.max_book_levels)"
    ]
    assert _rejected(registry, "mds_dom_snapshots_rejected", "too_many_levels") == 1


def _bybit(kind: str, ts: int, bids: list[list[str]]) -> str:
    data = {"s": "XRPUSDT", "b": bids, "a": [["9.0", "1"]]}
    return json.dumps({"topic": "orderbook.500.XRPUSDT", "type": kind, "ts": ts, "data": data})


def test_deltas_that_grow_a_rebuilt_book_over_the_limit_are_refused_until_a_snapshot(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "bybit.data"
    lines = [
        _bybit("snapshot", 1_733_011_200_000, [["1.0", "1"], ["1.1", "1"]]),
        _bybit("delta", 1_733_011_200_100, [["1.2", "1"], ["1.3", "1"]]),  # 4 bids: over 3
        _bybit("delta", 1_733_011_200_200, [["1.2", "0"]]),
        _bybit("snapshot", 1_733_011_200_300, [["1.0", "1"]]),
        _bybit("delta", 1_733_011_200_400, [["1.1", "1"]]),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = ingest_dom(engine, path, limits=ReadLimits(max_book_levels=3))
    assert [(r.line, r.reason) for r in report.rejections] == [
        (2, "too_many_levels"),
        (3, "delta_before_snapshot"),
    ]
    assert report.rejections[0].message == (
        "delta not applied: XRPUSDT: the rebuilt book's bids has 4 levels, over the limit "
        "of 3 (ingest.max_book_levels)"
    )
    assert report.accepted == 3


def test_a_binance_message_over_the_limit_is_not_held_whole(engine: Engine, tmp_path: Path) -> None:
    header = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"
    big = "".join(f"BTCUSDT,1667346579146,1,1,b,snap,{20000 - i}.0,1.0,-1\n" for i in range(50))
    small = "BTCUSDT,1667346580000,2,2,b,snap,20000.0,1.0,-1\n"
    small += "BTCUSDT,1667346580000,2,2,a,snap,20001.0,1.0,-1\n"
    path = tmp_path / "depth.csv"
    path.write_text(header + big + small)
    report = ingest_dom(engine, path, limits=ReadLimits(max_book_levels=20))
    assert [(r.line, r.reason) for r in report.rejections] == [(2, "too_many_levels")]
    assert "line 22: bids has 21 levels, over the limit of 20" in report.rejections[0].message
    assert report.accepted == 1


def test_the_limits_come_from_the_ingest_section_of_the_config(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("timestamp,bid,ask\n" + GOOD + "1699999001500,1.1," + "1" * 80 + "\n" + AFTER)
    config = tmp_path / "mds.toml"
    config.write_text("[ingest]\nmax_line_bytes = 64\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    argv = ["ingest", "ticks", str(path), "--symbol", "EUR/USD", "--no-progress"]
    code = main([*argv, "--db", database_url, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"rejected: {path}:4: line of 99 bytes is over the limit of 64" in err
    assert "rejected by reason: line_too_long 1" in out

    config.write_text("[ingest]\nmax_book_levels = 0\n")
    assert main([*argv, "--db", database_url, "--config", str(config)]) == 2
    assert "ingest.max_book_levels: must be a whole number >= 1, got 0" in capsys.readouterr().err


def test_inspection_skips_the_lines_reading_refuses_so_a_long_first_row_is_one_rejection(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by the fuzz suite: the first time was judged under the default limits, so a
    # first row over a configured limit, whose "time" is no time, refused the whole file.
    path = tmp_path / "ticks.csv"
    path.write_text("timestamp,bid,ask\n" + "9" * 80 + "\n" + GOOD + AFTER)
    config = tmp_path / "mds.toml"
    config.write_text("[ingest]\nmax_line_bytes = 64\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    argv = ["ingest", "ticks", str(path), "--symbol", "EUR/USD", "--no-progress"]
    assert main([*argv, "--db", database_url, "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"rejected: {path}:2: line of 81 bytes is over the limit of 64 "
        "(ingest.max_line_bytes); not read"
    ]
    assert "4 ticks accepted" in out
