"""PostgreSQL advisory locks: the one helper every raw-data writer and the migrations take.

PostgreSQL hands out ids from a sequence at insert time, but transactions commit in any
order, so a reader could see id 105 before id 103 commits and move its watermark past
103 for good. Writers of a raw table (ticks, order books, sentiment readings) take that
table's transaction-level advisory lock first: ids then become visible in order. A
program that inserts into those tables itself should take the same key. Migrations take
their own key, so two processes starting at once migrate one after the other.

On SQLite there is nothing to take: ``begin_write`` already holds the database's one
write lock.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Connection, text


def lock_key(name: str) -> int:
    """The advisory-lock key of ``name`` (its CRC-32, stable across versions)."""
    return zlib.crc32(name.encode())


#: Writers of ``ticks`` take this key (the candle service's watermark relies on it).
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
