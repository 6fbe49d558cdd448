from __future__ import annotations

import math
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from market_data_services.storage import (
    DeadlineExceeded,
    Timeouts,
    create_engine,
    normalise_url,
    ticks,
    upgrade,
)
from market_data_services.storage.engine import begin_write
from market_data_services.storage.upsert import insert
from tests.databases import DatabaseFactory
from tests.proxy import PausableProxy

TICK_COLUMNS = ("symbol", "ts", "seq", "bid", "ask")


def test_sqlite_connections_get_wal_busy_timeout_foreign_keys_and_normal_sync(
    tmp_path: Path,
) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'a.sqlite'}", timeouts=Timeouts(lock_seconds=1.234)
    )
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
    engine = create_engine(f"sqlite:///{path}", timeouts=Timeouts(lock_seconds=0.3))
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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lock_seconds", -1, "lock_seconds must be >= 0 (or None: no limit), got -1"),
        ("statement_seconds", 0, "statement_seconds must be > 0 (or None: no limit), got 0"),
        ("statement_seconds", math.nan, "statement_seconds must be > 0"),
        ("connect_seconds", 1, "connect_seconds must be an integer >= 2, got 1"),
        ("keepalives_count", 0, "keepalives_count must be an integer >= 1, got 0"),
    ],
)
def test_bad_timeouts_are_refused_naming_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Timeouts(**{field: value})


def test_engine_runs_queries_on_each_backend(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_begin_write_waits_for_a_writer_that_commits_in_between(tmp_path: Path) -> None:
    """A read-then-write transaction must not fail because another writer committed."""
    path = tmp_path / "rw.sqlite"
    engine = create_engine(f"sqlite:///{path}", timeouts=Timeouts(lock_seconds=5))
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


# -- PostgreSQL timeouts: a server that is slow, and one that does not answer at all -------


@pytest.fixture
def postgres_url(database_factory: DatabaseFactory) -> Iterator[str]:
    url = database_factory.url("postgresql")
    yield url
    database_factory.drop(url)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[PausableProxy]:
    """A forwarder to the test database that can stop answering (``pause()``)."""
    parsed = make_url(postgres_url)
    with PausableProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as forwarder:
        yield forwarder


def through(proxy: PausableProxy, url: str) -> str:
    parsed = make_url(url).set(host="127.0.0.1", port=proxy.port)
    return parsed.render_as_string(hide_password=False)


def outcome_within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """What ``call`` raised (None if nothing); fails the test, not hangs it, if it blocks."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call still blocks after {seconds} s"
    return raised[0]


SHORT = Timeouts(statement_seconds=0.3, lock_seconds=0.2, connect_seconds=2)


@pytest.mark.postgres
def test_postgres_statement_over_the_statement_timeout_is_cancelled_and_the_connection_kept(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url, timeouts=SHORT)
    with engine.connect() as connection:
        with pytest.raises(OperationalError, match="canceling statement due to statement timeout"):
            connection.execute(text("SELECT pg_sleep(30)"))
        connection.rollback()
        assert connection.execute(text("SELECT 1")).scalar() == 1
        assert not connection.invalidated
    engine.dispose()


@pytest.mark.postgres
def test_postgres_lock_wait_over_the_lock_timeout_fails_naming_the_lock(postgres_url: str) -> None:
    engine = create_engine(postgres_url, timeouts=SHORT)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x integer)")
    holder = psycopg.connect(
        make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with (
            pytest.raises(OperationalError, match="canceling statement due to lock timeout"),
            engine.connect() as connection,
        ):
            connection.exec_driver_sql("SELECT count(*) FROM t")
    finally:
        holder.close()
        engine.dispose()


def _query(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


@pytest.mark.postgres
@pytest.mark.parametrize("call", ["query", "commit", "copy"])
def test_postgres_call_to_a_server_that_stopped_answering_fails_at_the_client_deadline(
    proxy: PausableProxy, postgres_url: str, call: str
) -> None:
    """No server-side timeout can fire when the server does not answer: the client's does."""
    engine = create_engine(through(proxy, postgres_url), timeouts=SHORT)
    upgrade(engine)

    def commit() -> None:
        with engine.connect() as connection:
            connection.execute(ticks.insert().values(symbol="EUR/USD", ts=1, seq=0, bid=1, ask=2))
            proxy.pause()
            connection.commit()

    def copy() -> None:
        with engine.begin() as connection:
            proxy.pause()
            insert(connection, ticks, [("EUR/USD", 2, 0, 1.0, 2.0)], columns=TICK_COLUMNS)

    def query() -> None:
        with engine.connect() as connection:
            proxy.pause()
            connection.exec_driver_sql("SELECT 1")

    try:
        error = outcome_within(30, {"query": query, "commit": commit, "copy": copy}[call])
        assert isinstance(error, OperationalError), error
        assert isinstance(error.orig, DeadlineExceeded), error
        assert "no answer from PostgreSQL" in str(error)
        assert "within 1.3 s" in str(error)
        assert error.connection_invalidated  # the pool dropped it

        # Answering again, the same engine works at once: no restart, no dead connection.
        proxy.resume()
        assert outcome_within(30, lambda: _query(engine)) is None
    finally:
        proxy.resume()
        engine.dispose()


@pytest.mark.postgres
def test_postgres_pooled_connection_to_a_silent_server_fails_the_checkout_in_bounded_time(
    proxy: PausableProxy, postgres_url: str
) -> None:
    """The pre-ping of a pooled connection, then the new connection, are both bounded."""
    engine = create_engine(through(proxy, postgres_url), timeouts=SHORT)
    _query(engine)  # one connection in the pool
    proxy.pause()
    try:
        error = outcome_within(30, lambda: _query(engine))
        assert isinstance(error, OperationalError), error
        assert "connection timeout expired" in str(error)
    finally:
        proxy.resume()
        engine.dispose()


@pytest.mark.postgres
def test_postgres_connections_get_keepalives_and_the_server_timeouts(postgres_url: str) -> None:
    timeouts = Timeouts(
        statement_seconds=12,
        lock_seconds=3,
        keepalives_idle_seconds=7,
        keepalives_interval_seconds=4,
        keepalives_count=2,
    )
    engine = create_engine(postgres_url, timeouts=timeouts)
    with engine.connect() as connection:
        shown = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("statement_timeout", "lock_timeout")
        }
        # The server's end too: a client whose host vanished loses its session (and its
        # symbol locks) after idle + interval * count seconds, not the kernel's two hours.
        server_side = [
            connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        ]
        fd = connection.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        with socket.socket(fileno=os.dup(fd)) as sock:
            keepalive = [
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            ]
    engine.dispose()
    assert shown == {"statement_timeout": "12s", "lock_timeout": "3s"}
    assert keepalive == [1, 7, 4, 2]
    assert server_side == ["7", "4", "2"]


@pytest.mark.postgres
def test_postgres_url_parameters_win_over_the_timeouts(postgres_url: str) -> None:
    url = make_url(postgres_url).update_query_dict(
        {"options": "-c statement_timeout=7000", "connect_timeout": "3"}
    )
    engine = create_engine(url, timeouts=SHORT)
    with engine.connect() as connection:
        statement = connection.exec_driver_sql("SHOW statement_timeout").scalar()
        parameters = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    engine.dispose()
    assert statement == "7s"
    assert parameters["connect_timeout"] == "3"


@pytest.mark.postgres
def test_postgres_statements_and_lock_waits_are_unbounded_unless_asked(postgres_url: str) -> None:
    """The library default, for long maintenance work (``mds db upgrade``, backfills)."""
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        shown = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("statement_timeout", "lock_timeout")
        }
    engine.dispose()
    assert shown == {"statement_timeout": "0", "lock_timeout": "0"}
