"""The advisory lock every raw-data writer and the migrations take."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from market_data_services.storage import create_engine
from market_data_services.storage.engine import begin_write
from market_data_services.storage.locks import (
    DOM_WRITE_LOCK_KEY,
    MIGRATE_LOCK_KEY,
    SENTIMENT_WRITE_LOCK_KEY,
    TICK_WRITE_LOCK_KEY,
    SqliteRunLock,
    SqliteRunLockError,
    hold_advisory_lock,
)
from tests.databases import DatabaseFactory


@pytest.mark.postgres
def test_a_held_write_lock_keeps_other_writers_out_until_its_transaction_ends(
    database_factory: DatabaseFactory,
) -> None:
    engine = create_engine(database_factory.url("postgresql"))
    try:
        probe = text("SELECT pg_try_advisory_xact_lock(:key)")
        with begin_write(engine) as holder:
            hold_advisory_lock(holder, TICK_WRITE_LOCK_KEY)
            with engine.connect() as other, other.begin():
                assert other.execute(probe, {"key": TICK_WRITE_LOCK_KEY}).scalar() is False
                # Another table's writers are not held up.
                assert other.execute(probe, {"key": DOM_WRITE_LOCK_KEY}).scalar() is True
        with engine.connect() as other, other.begin():
            assert other.execute(probe, {"key": TICK_WRITE_LOCK_KEY}).scalar() is True
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_file_loads_share_the_write_lock_and_a_live_writer_waits_for_them(
    database_factory: DatabaseFactory,
) -> None:
    """Two writers of tick files hold the lock at once; the live feed's writer, which
    numbers after the stored ticks, needs it alone."""
    engine = create_engine(database_factory.url("postgresql"))
    try:
        alone = text("SELECT pg_try_advisory_xact_lock(:key)")
        shared = text("SELECT pg_try_advisory_xact_lock_shared(:key)")
        key = {"key": TICK_WRITE_LOCK_KEY}
        with begin_write(engine) as first:
            hold_advisory_lock(first, TICK_WRITE_LOCK_KEY, shared=True)
            with engine.connect() as other, other.begin():
                assert other.execute(shared, key).scalar() is True
            with engine.connect() as other, other.begin():
                assert other.execute(alone, key).scalar() is False
        with begin_write(engine) as live:
            hold_advisory_lock(live, TICK_WRITE_LOCK_KEY)
            with engine.connect() as other, other.begin():
                assert other.execute(shared, key).scalar() is False
    finally:
        engine.dispose()


def test_every_table_has_its_own_key_and_the_tick_key_is_the_published_one() -> None:
    keys = {TICK_WRITE_LOCK_KEY, DOM_WRITE_LOCK_KEY, SENTIMENT_WRITE_LOCK_KEY, MIGRATE_LOCK_KEY}
    assert len(keys) == 4
    # Programs that write ticks themselves take this number: it must not change.
    assert TICK_WRITE_LOCK_KEY == 1_576_837_435


def test_a_second_run_on_one_sqlite_file_is_refused_naming_the_first(tmp_path: Path) -> None:
    database = str(tmp_path / "mds.sqlite")
    first = SqliteRunLock.acquire(database)
    assert first is not None
    try:
        with pytest.raises(SqliteRunLockError) as refused:
            SqliteRunLock.acquire(database)
        message = str(refused.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "one mds run per database file" in message and "PostgreSQL" in message
    finally:
        first.release()
    again = SqliteRunLock.acquire(database)  # released: the next run starts
    assert again is not None
    again.release()


def test_a_killed_runs_sqlite_lock_does_not_block_the_next(tmp_path: Path) -> None:
    database = str(tmp_path / "mds.sqlite")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from market_data_services.storage.locks import SqliteRunLock\n"
            f"SqliteRunLock.acquire({database!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SqliteRunLockError, match=f"pid {holder.pid} "):
            SqliteRunLock.acquire(database)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        lock = SqliteRunLock.acquire(database)
        assert lock is not None
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_an_in_memory_sqlite_database_has_nothing_to_share() -> None:
    assert SqliteRunLock.acquire(":memory:") is None
    assert SqliteRunLock.acquire(None) is None
