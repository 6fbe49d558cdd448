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
from tests.databases import DatabaseFactory

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


def _stored(engine: Engine, *, by_id: bool = False) -> list[tuple[object, ...]]:
    """Every stored tick in key order, or in id (arrival) order."""
    columns = (ticks.c.symbol, ticks.c.ts, ticks.c.seq, ticks.c.bid, ticks.c.ask, ticks.c.volume)
    order = (ticks.c.id,) if by_id else (ticks.c.symbol, ticks.c.ts, ticks.c.seq)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(*columns).order_by(*order))]


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
    assert _stored(engine) == _stored(oracle)  # same rows, same numbering
    if engine.dialect.name == "sqlite":  # one writer: ids (the watermark) in file order
        assert _stored(engine, by_id=True) == _stored(oracle, by_id=True)
    assert (again.written, again.duplicates) == (0, expected.accepted)
    assert registry.get_sample_value("mds_ticks_written_total") == expected.written
    assert _writers() == []
    oracle.dispose()


@pytest.mark.postgres
def test_a_tick_another_program_stores_meanwhile_is_skipped_not_an_error(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """PostgreSQL: a program of the user's inserts a tick of the file, without our lock,
    in a transaction still open while the load checks that nothing is stored in its
    range. The load's COPY then waits on that row's key; when the program commits, the
    load keeps the program's row, counts the file's as already stored and goes on."""
    engine = create_engine(database_factory.url("postgresql"))
    upgrade(engine)
    path = tmp_path / "ticks.csv"
    path.write_text(
        "timestamp,bid,ask\n"
        + "".join(f"2023-11-14T10:00:{i:02d},1.1{i:02d},1.2{i:02d}\n" for i in range(40)),
        encoding="utf-8",
    )
    ts = 1_699_956_005_000  # the file's sixth tick, 2023-11-14T10:00:05Z
    other = engine.connect()
    done: list[IngestReport] = []
    failed: list[BaseException] = []

    def load() -> None:
        try:
            done.append(ingest_ticks(engine, path, symbol="EUR/USD", wall_clock=lambda: NOW))
        except BaseException as error:  # pragma: no cover - reported below
            failed.append(error)

    loader = threading.Thread(target=load)
    try:
        other.begin()
        other.execute(
            text(
                "INSERT INTO ticks (symbol, ts, seq, bid, ask) VALUES ('EUR/USD', :ts, 0, 9.0, 9.5)"
            ),
            {"ts": ts},
        )
        loader.start()
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        with engine.connect() as probe:
            for _ in range(600):  # the COPY waits for the program's transaction
                if probe.execute(waiting).scalar_one() or not loader.is_alive():
                    break
                probe.execute(text("SELECT pg_stat_clear_snapshot()"))
                threading.Event().wait(0.05)
            assert probe.execute(waiting).scalar_one() == 1, "the load did not wait on the row"
        other.commit()
        loader.join(timeout=60)
    finally:
        other.close()
    assert not loader.is_alive() and failed == []
    report = done[0]
    assert (report.accepted, report.written, report.duplicates) == (40, 39, 1)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT ts, bid FROM ticks ORDER BY ts")).all()
    assert len(rows) == 40
    assert (ts, 9.0) in [tuple(row) for row in rows]  # the program's row, not overwritten
    engine.dispose()


@pytest.mark.postgres
def test_two_loads_of_the_same_files_at_once_store_each_tick_once(
    database_factory: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: two ingests of the same files run together, each with its two writers;
    every tick is stored once, and between them the two reports count as new what one
    load alone stores, the rest as already stored, with no error."""
    engine = create_engine(database_factory.url("postgresql"))
    upgrade(engine)
    paths = _files(tmp_path)
    monkeypatch.setattr(ticks_module, "CHUNK_ROWS", 16)
    reports: list[IngestReport] = []
    failed: list[BaseException] = []
    start = threading.Barrier(2)

    def load() -> None:
        try:
            start.wait(timeout=30)
            reports.append(ingest_ticks(engine, paths, symbol="EUR/USD", wall_clock=lambda: NOW))
        except BaseException as error:  # pragma: no cover - reported below
            failed.append(error)

    loaders = [threading.Thread(target=load) for _ in range(2)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join(timeout=120)
    assert failed == [] and len(reports) == 2
    oracle = create_engine("sqlite://")
    upgrade(oracle)
    alone = ingest_ticks(oracle, paths, symbol="EUR/USD", wall_clock=lambda: NOW)
    assert alone.written > 0
    assert [r.accepted for r in reports] == [alone.accepted, alone.accepted]
    # The files overlap in time, so one load alone finds some of its ticks stored too.
    assert reports[0].written + reports[1].written == alone.written
    assert reports[0].duplicates + reports[1].duplicates == alone.accepted + alone.duplicates
    assert _stored(engine) == _stored(oracle)
    oracle.dispose()
    engine.dispose()


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
