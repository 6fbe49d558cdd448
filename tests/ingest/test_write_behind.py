"""Chunks are stored on a writer thread while the next is read (``pipeline.WriteBehind``):
what is stored, numbered, counted and reported stays that of storing them one after the
other, and a failed store is the database's error, not a damaged file."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from market_data_services.ingest import ticks as ticks_module
from market_data_services.ingest.pipeline import IngestReport
from market_data_services.ingest.ticks import ingest_ticks
from market_data_services.storage import create_engine, ticks, upgrade
from market_data_services.storage.migrate import is_schema_error
from tests.conftest import dies_with_parent

NOW = 1_700_000_000.0  # 2023-11-14, the injected wall clock
WRITER = "mds-ingest-writer"


def _rows(file_number: int, count: int) -> str:
    """``count`` ticks, runs of three at one time (so equal times straddle chunk ends),
    and every seventh row bad in a way the parser or the checks find."""
    lines = ["timestamp,bid,ask,volume,symbol"]
    for i in range(count):
        second = i // 3 + file_number  # files overlap in time: numbering goes on
        stamp = f"2023-11-14T{10 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        if i % 7 == 3:
            lines.append(f"{stamp},abc,1.11,1,EUR/USD")  # malformed: the parser
        elif i % 7 == 5:
            lines.append(f"{stamp},0,1.11,1,EUR/USD")  # non-positive: the checks
        else:
            lines.append(f"{stamp},{1.1 + i * 1e-5:.5f},{1.2 + i * 1e-5:.5f},{i},EUR/USD")
    return "\n".join(lines) + "\n"


def _files(folder: Path) -> list[Path]:
    paths = []
    for number, count in enumerate((130, 45, 200)):
        path = folder / f"part{number}.csv"
        path.write_text(_rows(number, count), encoding="utf-8")
        paths.append(path)
    return paths


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    columns = (ticks.c.symbol, ticks.c.ts, ticks.c.seq, ticks.c.bid, ticks.c.ask, ticks.c.volume)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(*columns).order_by(ticks.c.id))]


def _summary(report: IngestReport) -> tuple[object, ...]:
    return (
        report.files,
        report.rows,
        report.accepted,
        report.written,
        report.duplicates,
        report.rejected,
        report.rejected_by_reason,
        [(r.where, r.reason) for r in report.rejections],
        report.symbols,
        report.first_ts,
        report.last_ts,
    )


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WRITER)]


def test_chunks_stored_behind_the_reading_equal_one_store_after_the_other(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path)
    # The oracle: one chunk per file, stored on the reading thread (an in-memory SQLite
    # database is one per thread, so its writes never go to the writer).
    oracle = create_engine("sqlite://")
    upgrade(oracle)
    expected = ingest_ticks(oracle, paths, symbol="EUR/USD", wall_clock=lambda: NOW)
    assert expected.rejected > 0 and expected.accepted > 0

    monkeypatch.setattr(ticks_module, "CHUNK_ROWS", 16)  # many chunks in every file
    registry = CollectorRegistry()
    first = ingest_ticks(engine, paths, symbol="EUR/USD", registry=registry, wall_clock=lambda: NOW)
    again = ingest_ticks(engine, paths, symbol="EUR/USD", wall_clock=lambda: NOW)

    assert _summary(first) == _summary(expected)
    assert _stored(engine) == _stored(oracle)  # same rows, same numbering, same order
    assert (again.written, again.duplicates) == (0, expected.accepted)
    assert registry.get_sample_value("mds_ticks_written_total") == expected.written
    assert _writers() == []
    oracle.dispose()


def test_a_store_that_fails_on_the_writer_raises_the_database_error(
    engine: Engine, tmp_path: Path
) -> None:
    paths = _files(tmp_path)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE ticks"))
    with pytest.raises(DBAPIError) as caught:
        ingest_ticks(engine, paths, symbol="EUR/USD", wall_clock=lambda: NOW)
    # Not taken for a damaged file and reported as such: the command's schema message.
    assert is_schema_error(caught.value)
    assert _writers() == []


def test_ctrl_c_during_an_ingest_exits_with_whole_chunks_stored(tmp_path: Path) -> None:
    """SIGINT while a chunk is being written: the process ends (the writer finishes or
    drops its chunk, nothing waits forever) and what is stored is whole chunks."""
    folder = tmp_path / "eurusd"
    folder.mkdir()
    block = "".join(f"{1000 + i},1.38{i % 90:03d},1.38{i % 90 + 5:03d}\r\n" for i in range(10_000))
    with gzip.open(folder / "20140501_eurusd_tick_quote.csv.gz", "wt", compresslevel=1) as out:
        for _ in range(150):  # 1.5 M ticks: twelve chunks
            out.write(block)
    url = f"sqlite:///{tmp_path / 'ticks.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    command = [sys.executable, "-m", "market_data_services", "ingest", "ticks", str(folder)]
    command += ["--symbol", "EUR/USD", "--no-progress", "--db", url]
    child = subprocess.Popen(dies_with_parent(command), stderr=subprocess.PIPE, text=True)
    try:
        stored = 0
        while stored == 0 and child.poll() is None:  # the first chunk committed
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM ticks")).scalar_one()
            threading.Event().wait(0.05)
        assert child.poll() is None, "the ingest ended before it could be interrupted"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in stderr
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM ticks")).scalar_one()
    engine.dispose()
    assert 0 < stored < 1_500_000
    assert stored % ticks_module.CHUNK_ROWS == 0  # no chunk stored in part
