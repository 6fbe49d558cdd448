"""Deleting old rows in bounded batches, for the retention service.

Each call deletes at most ``limit`` rows in the caller's transaction, so a retention pass
is many short transactions: writers and readers never wait long behind it, and the
PostgreSQL WAL and SQLite journal of one transaction stay small.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, and_, delete, select

from market_data_services.storage.arrival import position_of
from market_data_services.storage.schema import candles, service_progress


def delete_raw_batch(
    connection: Connection,
    table: Table,
    *,
    symbol: str,
    before_ms: int,
    up_to_position: int,
    limit: int,
) -> int:
    """Delete up to ``limit`` rows of the raw ``table`` (ticks, dom_snapshots,
    sentiment_readings) of ``symbol`` with ``ts < before_ms`` whose arrival position is
    at most ``up_to_position`` (already read by the service that derives from them).
    Returns how many were deleted."""
    chosen = (
        select(table.c.id)
        .where(
            table.c.symbol == symbol,
            table.c.ts < before_ms,
            position_of(connection, table) <= up_to_position,
        )
        .order_by(table.c.ts)
        .limit(limit)
    )
    # Through the (symbol, ts) index, oldest first; the ids then find the rows by key.
    ids = [row[0] for row in connection.execute(chosen)]
    if not ids:
        return 0
    connection.execute(delete(table).where(table.c.id.in_(ids)))
    return len(ids)


def delete_candles_batch(
    connection: Connection, *, symbol: str, timeframe: str, before_ms: int, limit: int
) -> int:
    """Delete up to ``limit`` candles of ``symbol`` and ``timeframe`` with
    ``ts_open < before_ms``, oldest first. Returns how many were deleted."""
    key = and_(candles.c.symbol == symbol, candles.c.timeframe == timeframe)
    starts = [
        row[0]
        for row in connection.execute(
            select(candles.c.ts_open)
            .where(key, candles.c.ts_open < before_ms)
            .order_by(candles.c.ts_open)
            .limit(limit)
        )
    ]
    if not starts:
        return 0
    connection.execute(
        delete(candles).where(key, candles.c.ts_open >= starts[0], candles.c.ts_open <= starts[-1])
    )
    return len(starts)


def progress_by_symbol(connection: Connection, service: str) -> dict[str, dict[str, int | None]]:
    """Every stored progress key of ``service``, per symbol (where each symbol got to)."""
    table = service_progress
    found: dict[str, dict[str, int | None]] = {}
    rows = connection.execute(
        select(table.c.symbol, table.c.key, table.c.value).where(table.c.service == service)
    )
    for symbol, key, value in rows:
        found.setdefault(symbol, {})[key] = value
    return found


__all__ = ["delete_candles_batch", "delete_raw_batch", "progress_by_symbol"]
