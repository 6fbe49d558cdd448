"""``mds export`` on real SQLite and PostgreSQL databases filled by the real candle
service: every format reads back as the Python reader gives it."""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from market_data_services import read_book_metrics, read_candles
from market_data_services.app.cli import main
from tests.derived_data import BOOK_ROWS, fill


@pytest.fixture
def filled(engine: Engine) -> str:
    fill(engine)
    return engine.url.render_as_string(hide_password=False)


def test_csv_to_a_file_has_the_readers_candles(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "eurusd.csv"
    args = ["export", "candles", "--symbol", "EUR/USD", "--timeframe", "1m", "--db", filled]
    assert main([*args, "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    expected = read_candles(filled, "EUR/USD", "1m")
    assert [r["time"] for r in rows] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in expected.index]
    assert [float(r["close"]) for r in rows] == expected["close"].tolist()
    assert [r["complete"] for r in rows] == ["true"] * 10 + ["false"]
    assert not list(tmp_path.glob("*.partial"))


def test_jsonl_to_standard_output_with_a_range(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", "candles", "--symbol", "EUR/USD", "--timeframe", "5m", "--db", filled]
    range_ = ["--from", "2026-11-30T04:05:00Z", "--to", "2026-11-30T04:15:00Z"]
    assert main([*args, *range_, "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["time"], r["complete"]) for r in lines] == [
        ("2026-11-30T04:05:00Z", True),
        ("2026-11-30T04:10:00Z", False),
    ]
    assert "2 candles rows of EUR/USD to standard output (jsonl)" in captured.err


def test_parquet_by_extension_reads_back_with_typed_columns(filled: str, tmp_path: Path) -> None:
    out = tmp_path / "book.parquet"
    assert main(["export", "book", "--symbol", "EUR/USD", "--db", filled, "-o", str(out)]) == 0
    table = pd.read_parquet(out)
    assert len(table) == BOOK_ROWS
    assert str(table["time"].dtype) == "datetime64[ms, UTC]"
    expected = read_book_metrics(filled, "EUR/USD")
    assert table["ofi"].tolist() == expected["ofi"].tolist()
    assert table["ts"].tolist() == [t.value // 1_000_000 for t in expected.index]


def test_the_database_comes_from_the_environment_as_for_every_command(
    filled: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MDS_DATABASE_URL", filled)
    assert main(["export", "sentiment", "--symbol", "EUR/USD"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("ts,time,long_share,")


def test_an_unknown_symbol_exits_2_and_leaves_no_file(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    args = ["export", "candles", "--symbol", "USD/JPY", "--timeframe", "1m", "--db", filled]
    assert main([*args, "-o", str(out)]) == 2
    assert "no candles stored for symbol 'USD/JPY'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["candles", "--symbol", "EUR/USD"], "--timeframe is required for candles; one of 1m"),
        (["book", "--symbol", "EUR/USD", "--timeframe", "1m"], "--timeframe applies to candles"),
        (["book", "--symbol", "EUR/USD", "--from", "soon"], "--from: timestamp 'soon'"),
    ],
)
def test_bad_usage_exits_2_saying_what_is_wrong(
    filled: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", *extra, "--db", filled]) == 2
    assert message in capsys.readouterr().err


def test_parquet_without_pyarrow_names_the_extra(
    filled: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what import sees when it is absent
    args = ["export", "book", "--symbol", "EUR/USD", "--format", "parquet", "--db", filled]
    assert main(args) == 2
    assert "market-data-services[parquet]" in capsys.readouterr().err


def test_progress_is_drawn_on_a_terminal_and_not_in_a_pipe(filled: str, tmp_path: Path) -> None:
    mds = str(Path(sys.executable).with_name("mds"))
    command = [mds, "export", "candles", "--symbol", "EUR/USD", "--timeframe", "1m"]
    command += ["--db", filled, "--output", str(tmp_path / "out.csv")]
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(command, stderr=terminal) as process:
            os.close(terminal)
            on_terminal = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                on_terminal += chunk
        assert process.returncode == 0
    finally:
        os.close(controller)
    assert b"of the time range" in on_terminal and b"11 rows" in on_terminal
    piped = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "time range" not in piped.stderr
    assert piped.stderr.startswith("mds export: 11 candles rows of EUR/USD to ")


def test_an_unreachable_database_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    out = tmp_path / "x.csv"
    assert main(["export", "book", "--symbol", "EUR/USD", "--db", url, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mds export: database error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
