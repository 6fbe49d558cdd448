"""Engines from a URL: SQLite (the embedded default) and PostgreSQL through psycopg 3.

``create_engine`` only builds the engine, as SQLAlchemy's does: no connection is opened
until first use. The per-connection settings are applied by a ``connect`` event, so every
pooled connection gets them, including ones opened after a database restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, Engine, make_url

#: How long a SQLite connection waits for another writer's lock before failing.
DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000

#: Execution option naming SQLite's BEGIN mode for a connection ("IMMEDIATE", "EXCLUSIVE").
SQLITE_BEGIN_OPTION = "mds_sqlite_begin"
_BEGIN_MODES = {"", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"}

_POSTGRES_ALIASES = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}


def normalise_url(url: str | URL) -> URL:
    """Map ``postgresql://`` and ``postgres://`` to psycopg 3; reject unsupported backends.

    >>> normalise_url("postgresql://u@h/db").drivername
    'postgresql+psycopg'
    """
    parsed = make_url(url) if isinstance(url, str) else url
    name = parsed.drivername
    if name in _POSTGRES_ALIASES:
        return parsed.set(drivername="postgresql+psycopg")
    if name in _SQLITE_DRIVERS:
        return parsed
    raise ValueError(
        f"unsupported database URL scheme {name!r}: use sqlite:///PATH "
        f"or postgresql+psycopg://USER@HOST/DB (postgresql:// is accepted too)"
    )


def is_sqlite(engine_or_url: Engine | URL | str) -> bool:
    if isinstance(engine_or_url, Engine):
        return engine_or_url.dialect.name == "sqlite"
    return normalise_url(engine_or_url).get_backend_name() == "sqlite"


def create_engine(
    url: str | URL,
    *,
    sqlite_busy_timeout_ms: int = DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` with our connection settings; other keywords go to SQLAlchemy.

    SQLite (``sqlite:///path``): each connection gets ``journal_mode=WAL`` (readers never
    block the writer), ``busy_timeout`` (a writer waits for the lock instead of failing
    at once), ``foreign_keys=ON`` and ``synchronous=NORMAL`` (durable across a process
    crash; WAL's recommended setting). SQLAlchemy emits BEGIN itself, so reads inside a
    transaction see one snapshot and SAVEPOINT works (the sqlite3 module's legacy mode
    would begin only at the first write).

    PostgreSQL (``postgresql+psycopg://``, or ``postgresql://`` mapped to psycopg 3):
    connections are pinged on checkout, so a restarted server costs one failed iteration,
    not a pool of dead connections.
    """
    parsed = normalise_url(url)
    if isinstance(sqlite_busy_timeout_ms, bool) or not isinstance(sqlite_busy_timeout_ms, int):
        raise ValueError(
            f"sqlite_busy_timeout_ms must be an integer, got {sqlite_busy_timeout_ms!r}"
        )
    if sqlite_busy_timeout_ms < 0:
        raise ValueError(f"sqlite_busy_timeout_ms must be >= 0, got {sqlite_busy_timeout_ms}")
    if parsed.get_backend_name() == "sqlite":
        engine = sqlalchemy.create_engine(parsed, **kwargs)
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sqlalchemy.create_engine(parsed, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; "begin" below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "")).upper()
        if mode not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_BEGIN_MODES)}")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write, committed at the end of the block.

    On SQLite it takes the write lock at BEGIN (``BEGIN IMMEDIATE``), waiting up to the
    busy timeout for another writer. A deferred transaction that reads first would take
    the lock at its first write and fail at once with "database is locked" if another
    writer committed in between; this one cannot. On PostgreSQL it is ``engine.begin()``.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection
