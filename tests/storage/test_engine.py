from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from market_data_services.storage import create_engine, normalise_url
from market_data_services.storage.engine import begin_write


def test_sqlite_connections_get_wal_busy_timeout_foreign_keys_and_normal_sync(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.sqlite'}", sqlite_busy_timeout_ms=1234)
    with engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }
    engine.dispose()
    # synchronous: 1 is NORMAL.
    assert pragma == {
        "journal_mode": "wal",
        "busy_timeout": 1234,
        "foreign_keys": 1,
        "synchronous": 1,
    }


def test_creating_an_engine_touches_no_file(tmp_path: Path) -> None:
    path = tmp_path / "never.sqlite"
    create_engine(f"sqlite:///{path}")
    assert not path.exists()


def test_sqlite_reads_in_a_transaction_see_one_snapshot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'snap.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.connect() as reader, reader.begin():
        before = reader.exec_driver_sql("SELECT count(*) FROM t").scalar()
        other = sqlite3.connect(tmp_path / "snap.sqlite")
        other.execute("INSERT INTO t VALUES (2)")
        other.commit()
        other.close()
        after = reader.exec_driver_sql("SELECT count(*) FROM t").scalar()
    engine.dispose()
    assert before == after == 1


def test_sqlite_writer_waits_for_the_busy_timeout_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    engine = create_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=300)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        waited = time.monotonic() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        engine.dispose()
    assert waited >= 0.25


def test_sqlite_engine_is_usable_from_several_threads(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'threads.sqlite'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    errors: list[BaseException] = []

    def write(value: int) -> None:
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
    engine.dispose()
    assert errors == []
    assert count == 8


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"],
)
def test_postgres_urls_are_served_by_psycopg3(url: str) -> None:
    assert normalise_url(url).drivername == "postgresql+psycopg"
    assert create_engine(url).dialect.driver == "psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db"])
def test_unsupported_backends_are_refused_with_the_choices(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///PATH or postgresql"):
        create_engine(url)


def test_negative_busy_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite_busy_timeout_ms must be >= 0, got -1"):
        create_engine("sqlite:///x.sqlite", sqlite_busy_timeout_ms=-1)


def test_engine_runs_queries_on_each_backend(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_begin_write_waits_for_a_writer_that_commits_in_between(tmp_path: Path) -> None:
    """A read-then-write transaction must not fail because another writer committed."""
    path = tmp_path / "rw.sqlite"
    engine = create_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=5000)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    timer = threading.Timer(0.2, lambda: (other.execute("COMMIT"), other.close()))
    timer.start()
    with begin_write(engine) as connection:
        seen = connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
        connection.exec_driver_sql("INSERT INTO t VALUES (2)")
    timer.join()
    with engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
    engine.dispose()
    assert (seen, count) == (1, 2)
