"""PostgreSQL advisory locks: the one helper every raw-data writer and the migrations take.

Our writers of a raw table (ticks, order books, sentiment readings) take that table's
transaction-level advisory lock, so two ingests of ours commit one after the other. The
services' watermarks no longer rely on it: they follow the inserting transaction, up to
the oldest one in flight (``storage/arrival.py``), so a program of the user's may insert
without any lock of ours. Migrations take their own key, so two processes starting at
once migrate one after the other.

On SQLite there is nothing to take: ``begin_write`` already holds the database's one
write lock.
"""

from __future__ import annotations

import zlib

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


def hold_advisory_lock(connection: Connection, key: int) -> None:
    """Wait for the transaction-level advisory lock ``key`` on PostgreSQL; it is released
    when the transaction ends. Does nothing on SQLite (see the module docstring)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


__all__ = [
    "DOM_WRITE_LOCK_KEY",
    "MIGRATE_LOCK_KEY",
    "SENTIMENT_WRITE_LOCK_KEY",
    "TICK_WRITE_LOCK_KEY",
    "hold_advisory_lock",
    "lock_key",
]
