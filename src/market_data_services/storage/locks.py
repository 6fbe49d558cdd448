"""PostgreSQL advisory locks: the one helper every raw-data writer and the migrations take.

Our writers of a raw table (ticks, order books, sentiment readings) take that table's
transaction-level advisory lock, so two ingests of ours commit one after the other
(tick files, which need no order among themselves, share it: ``hold_advisory_lock``). The
services' watermarks no longer rely on it: they follow the inserting transaction, up to
the oldest one in flight (``storage/arrival.py``), so a program of the user's may insert
without any lock of ours. Migrations take their own key, so two processes starting at
once migrate one after the other.

On SQLite there is nothing to take: ``begin_write`` already holds the database's one
write lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import zlib
from pathlib import Path

from sqlalchemy import Connection, text


def lock_key(name: str) -> int:
    """The advisory-lock key of ``name`` (its CRC-32, stable across versions)."""
    return zlib.crc32(name.encode())


#: Our writers of ``ticks`` take this key.
TICK_WRITE_LOCK_KEY = lock_key("market_data_services.ticks.write")
#: Writers of ``dom_snapshots``.
DOM_WRITE_LOCK_KEY = lock_key("market_data_services.dom.write")
#: Writers of ``sentiment_readings``.
SENTIMENT_WRITE_LOCK_KEY = lock_key("market_data_services.sentiment.write")
#: "Migrating this database".
MIGRATE_LOCK_KEY = lock_key("market_data_services.migrate")


def hold_advisory_lock(connection: Connection, key: int, *, shared: bool = False) -> None:
    """Wait for the transaction-level advisory lock ``key`` on PostgreSQL; it is released
    when the transaction ends. Does nothing on SQLite (see the module docstring).

    ``shared``: writers that do not depend on what the others store (a file's ticks are
    numbered within the file, and a stored tick is skipped) hold it together, and a
    writer that does (the live feed's ``write_ticks``, numbering after the stored ticks)
    holds it alone; PostgreSQL queues a new shared holder behind a waiting exclusive one,
    so the exclusive writer waits for the transactions in flight, never for a whole load.
    """
    if connection.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        connection.execute(text(f"SELECT {function}(:key)"), {"key": key})


class SqliteRunLockError(RuntimeError):
    """Another ``mds run`` already works this SQLite file."""


class SqliteRunLock:
    """The one ``mds run`` of a SQLite file: an exclusive ``flock`` on ``<file>-mds.lock``.

    Why refuse rather than wait as a standby: a SQLite file lives on one host, so a
    standby would guard only against the process dying, which the process supervisor
    (systemd ``Restart=``, a container's restart policy) already restarts in seconds, and
    a waiting process that serves no data is easy to mistake for a working one. A second
    instance beside the first would only interleave writes (two demo feeds, two price
    paths). The kernel drops the lock when the process ends, ``kill -9`` included, so a
    crashed run never blocks the next. Several instances are PostgreSQL's job.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd  # owned by the thread that calls release()

    @classmethod
    def acquire(cls, database: str | None) -> SqliteRunLock | None:
        """Take the lock of ``database`` (a file path), or raise ``SqliteRunLockError``
        naming the holder. None for an in-memory database (nothing to share)."""
        if database in (None, "", ":memory:") or database.startswith("file::memory:"):
            return None
        db = Path(database).resolve()
        path = db.with_name(db.name + "-mds.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SqliteRunLockError(
                f"{db} is already used by another mds run ({holder}); SQLite allows one "
                f"mds run per database file. Stop that one first, or use PostgreSQL to "
                f"run several instances (they share the symbols)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": int(time.time())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


def _read_holder(fd: int) -> str:
    """Who holds the lock, from what it wrote ("pid 123 on host h since ...")."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(record["since"])))
        return f"pid {record['pid']} on {record['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


__all__ = [
    "DOM_WRITE_LOCK_KEY",
    "MIGRATE_LOCK_KEY",
    "SENTIMENT_WRITE_LOCK_KEY",
    "TICK_WRITE_LOCK_KEY",
    "SqliteRunLock",
    "SqliteRunLockError",
    "hold_advisory_lock",
    "lock_key",
]
