"""Engines from a URL: SQLite (the embedded default) and PostgreSQL through psycopg 3.

``create_engine`` only builds the engine, as SQLAlchemy's does: no connection is opened
until first use. The per-connection settings are applied by a ``connect`` event (SQLite)
or as connection parameters (PostgreSQL), so every pooled connection gets them, including
ones opened after a database restart. ``Timeouts`` bounds how long calls may take.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, Engine, make_url

if TYPE_CHECKING:  # _deadline imports psycopg: only a PostgreSQL engine imports it
    from market_data_services.storage._deadline import BoundedConnection

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


def is_memory_sqlite(engine: Engine) -> bool:
    """An in-memory SQLite database: the pool gives each thread a database of its own, so
    a write must stay on the thread that reads it."""
    return engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")


#: Write transactions a bulk load runs at once on PostgreSQL, where each is a server
#: process of its own: two keep the server's index work on two cores while the client
#: reads the next chunk (benchmarks/ingest_peers.py).
POSTGRES_WRITE_STREAMS = 2


def write_streams(engine: Engine) -> int:
    """How many write transactions of one bulk load are worth running at once: SQLite
    has one writer (and an in-memory database one connection per thread), so 1."""
    return POSTGRES_WRITE_STREAMS if engine.dialect.name == "postgresql" else 1


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """How long database calls may take, so that a hung database fails them, not hangs them.

    The defaults bound what never fails a working call (connecting, keepalives) and leave
    statements and lock waits to the backend's defaults: ``mds run`` bounds those from its
    ``[database]`` configuration; long maintenance work (``mds db upgrade``, ``mds
    backfill``, ``mds ingest``) keeps them unbounded.
    """

    #: Waiting for another transaction's lock: SQLite's ``busy_timeout`` (None: 5 s) and
    #: PostgreSQL's ``lock_timeout`` (None: the server's setting, normally no limit).
    lock_seconds: float | None = None
    #: PostgreSQL: the server's ``statement_timeout``, and a client-side deadline
    #: ``CLIENT_GRACE_SECONDS`` later for a server that does not answer at all. None: no limit.
    statement_seconds: float | None = None
    #: PostgreSQL: opening a connection (libpq counts whole seconds, at least 2).
    connect_seconds: int = 10
    #: PostgreSQL: TCP keepalives, so that an idle connection's dead peer is noticed, on
    #: both ends (the server's ``tcp_keepalives_*`` too: a dead client's session ends).
    keepalives_idle_seconds: int = 10
    keepalives_interval_seconds: int = 5
    keepalives_count: int = 3

    def __post_init__(self) -> None:
        for name in ("lock_seconds", "statement_seconds"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number of seconds or None, got {value!r}")
            if not math.isfinite(value) or value < 0 or (name == "statement_seconds" and not value):
                limit = "> 0" if name == "statement_seconds" else ">= 0"
                raise ValueError(f"{name} must be {limit} (or None: no limit), got {value}")
        for name, least in (
            ("connect_seconds", 2),
            ("keepalives_idle_seconds", 1),
            ("keepalives_interval_seconds", 1),
            ("keepalives_count", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")

    @property
    def client_deadline_seconds(self) -> float | None:
        """How long the client waits for any answer of a PostgreSQL call (None: for ever)."""
        if self.statement_seconds is None:
            return None
        from market_data_services.storage._deadline import (  # noqa: PLC0415 - psycopg
            CLIENT_GRACE_SECONDS,
        )

        return self.statement_seconds + CLIENT_GRACE_SECONDS


def create_engine(
    url: str | URL,
    *,
    timeouts: Timeouts | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` with our connection settings; other keywords go to SQLAlchemy.

    SQLite (``sqlite:///path``): each connection gets ``journal_mode=WAL`` (readers never
    block the writer), ``busy_timeout`` (a writer waits for the lock instead of failing
    at once; ``timeouts.lock_seconds``, 5 s by default), ``foreign_keys=ON`` and
    ``synchronous=NORMAL`` (durable across a process crash; WAL's recommended setting).
    SQLAlchemy emits BEGIN itself, so reads inside a transaction see one snapshot and
    SAVEPOINT works (the sqlite3 module's legacy mode would begin only at the first write).

    PostgreSQL (``postgresql+psycopg://``, or ``postgresql://`` mapped to psycopg 3):
    connections are pinged on checkout, so a restarted server costs one failed iteration,
    not a pool of dead connections. Each connection gets ``connect_timeout``, TCP
    keepalives, and, when set, ``lock_timeout`` and ``statement_timeout`` with a
    client-side deadline on every call (see ``Timeouts``). Parameters in the URL's query
    string (``?connect_timeout=3``) win over ``timeouts``.
    """
    parsed = normalise_url(url)
    if timeouts is None:
        timeouts = Timeouts()
    if parsed.get_backend_name() == "sqlite":
        engine = sqlalchemy.create_engine(parsed, **kwargs)
        busy_ms = (
            DEFAULT_SQLITE_BUSY_TIMEOUT_MS
            if timeouts.lock_seconds is None
            else int(timeouts.lock_seconds * 1000)
        )
        _configure_sqlite(engine, busy_ms)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = sqlalchemy.create_engine(parsed, **kwargs)
    _configure_postgres(engine, timeouts)
    return engine


def _configure_postgres(engine: Engine, timeouts: Timeouts) -> None:
    params: dict[str, Any] = {
        "connect_timeout": timeouts.connect_seconds,
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalives_idle_seconds,
        "keepalives_interval": timeouts.keepalives_interval_seconds,
        "keepalives_count": timeouts.keepalives_count,
    }
    # The server's side of the keepalives (user-settable, per session): a client whose
    # host vanished is noticed in seconds, its session ended and its advisory locks
    # (symbol ownership) released, instead of after the kernel's two hours.
    settings = {
        "tcp_keepalives_idle": timeouts.keepalives_idle_seconds,
        "tcp_keepalives_interval": timeouts.keepalives_interval_seconds,
        "tcp_keepalives_count": timeouts.keepalives_count,
    }
    if timeouts.statement_seconds is not None:
        settings["statement_timeout"] = max(1, int(timeouts.statement_seconds * 1000))
    if timeouts.lock_seconds is not None:
        # lock_timeout=0 would mean "no limit": 1 ms is "do not wait", as on SQLite.
        settings["lock_timeout"] = max(1, int(timeouts.lock_seconds * 1000))
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    deadline = timeouts.client_deadline_seconds
    # Here, not at the top: importing psycopg would cost every SQLite command 50 ms.
    from market_data_services.storage._deadline import (  # noqa: PLC0415 - psycopg
        BoundedConnection,
        BoundedCursor,
    )

    @event.listens_for(engine, "do_connect")
    def _on_do_connect(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> BoundedConnection:
        for name, value in params.items():
            cparams.setdefault(name, value)
        if options:
            # Ours first: a setting in the URL's own options comes later and wins.
            cparams["options"] = f"{options} {cparams.get('options', '')}".strip()
        cparams.setdefault("cursor_factory", BoundedCursor)
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.deadline_seconds = deadline
        return connection


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    in_memory = is_memory_sqlite(engine)

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
