"""The arrival order of raw rows, which the services' watermarks follow, per dialect.

A service remembers "rows up to position P are done" and next reads the rows after P. That
needs positions that become visible in order: a row must never appear below a position
already read past.

- SQLite: the ``id`` (``AUTOINCREMENT``). SQLite has one writer at a time, so ids commit
  in order.
- PostgreSQL: ids come from a sequence at insert time, but transactions commit in any
  order, so id 105 can be visible while id 103 is still in flight. Each raw row therefore
  carries ``arrival``: the id of the transaction that inserted it
  (``pg_current_xact_id()``, a column default, so a plain ``INSERT`` or ``COPY`` by any
  program fills it). A reader only goes up to the **horizon**, just below the oldest
  transaction of this database still in flight (from ``pg_current_snapshot()`` and
  ``pg_stat_activity``): every transaction below it has committed or aborted, so no row
  can appear there any more. A long open write transaction in this database holds the
  horizon back (its rows, and those of younger transactions, wait for it); nothing is
  skipped.

The column is bigint (the 64-bit ``xid8`` as a number), so positions are plain integers
on both databases and stored in ``service_progress`` as before.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    ColumnElement,
    Connection,
    Table,
    column,
    event,
    func,
    select,
)

#: The PostgreSQL-only column of each raw table holding the inserting transaction's id.
ARRIVAL_COLUMN = "arrival"
#: The raw tables that carry it.
RAW_TABLES = ("ticks", "dom_snapshots", "sentiment_readings")
#: Its default: the inserting transaction's id as a bigint.
ARRIVAL_DEFAULT_SQL = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"
#: The transactions of this database that hold an id now (32-bit ids, as listed there),
#: and whether a prepared (two-phase) transaction of it is pending.
_IN_FLIGHT_SQL = (
    "SELECT backend_xid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
    "AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_PREPARED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database())"
)


def declare_arrival(table: Table, *index_columns: str) -> None:
    """On PostgreSQL, give ``table`` its ``arrival`` column and index whenever it is created
    from the metadata (``table.create(engine)``), as revision 0004 gives a migrated
    database; on SQLite nothing is added."""
    index = f"ix_{table.name}_{'_'.join(index_columns)}"
    statements = (
        f"ALTER TABLE {table.name} ADD COLUMN {ARRIVAL_COLUMN} bigint NOT NULL "
        f"DEFAULT {ARRIVAL_DEFAULT_SQL}",
        f"CREATE INDEX {index} ON {table.name} ({', '.join(index_columns)})",
    )
    for statement in statements:
        ddl = DDL(statement).execute_if(dialect="postgresql")  # type: ignore[no-untyped-call]
        event.listen(table, "after_create", ddl)


def position_name(connection: Connection) -> str:
    """The column that orders arrivals: ``id`` on SQLite, ``arrival`` on PostgreSQL."""
    return "id" if connection.dialect.name == "sqlite" else ARRIVAL_COLUMN


def position_of(connection: Connection, table: Table) -> ColumnElement[int]:
    """``table``'s arrival position as a column expression, for SQLAlchemy queries."""
    if connection.dialect.name == "sqlite":
        return table.c.id
    # A column of ``table`` the metadata does not declare; bound to it, so a query over
    # it alone still selects FROM the table.
    return column(ARRIVAL_COLUMN, BigInteger, _selectable=table)


def arrival_horizon(connection: Connection, table: Table) -> int:
    """The highest position up to which the rows of ``table`` are settled: no row can
    still appear at or below it. SQLite: the newest id; PostgreSQL: just below the
    oldest transaction in flight (the same for every table)."""
    if connection.dialect.name == "sqlite":
        value = connection.execute(select(func.max(table.c.id))).scalar()
        return 0 if value is None else int(value)
    return _postgres_horizon(connection)


def _postgres_horizon(connection: Connection) -> int:
    """Just below the oldest transaction **of this database** in flight.

    ``pg_snapshot_xmin`` alone is the oldest of the whole server, so one long transaction
    in another database would hold every service back; a transaction cannot write into
    another database, so only this database's count. The snapshot is taken first: a
    transaction that gets its id afterwards gets one at or above its ``xmax``. One that
    commits between the two reads is simply not listed, and is visible to the next read.
    """
    snapshot = str(connection.exec_driver_sql("SELECT pg_current_snapshot()::text").scalar())
    xmin_text, xmax_text, xip_text = snapshot.split(":")
    if xmin_text == xmax_text:
        return int(xmax_text) - 1  # nothing in flight anywhere
    # pg_stat_activity is read once per transaction unless cleared: read it fresh.
    connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    if connection.exec_driver_sql(_PREPARED_SQL).scalar():
        return int(xmin_text) - 1  # prepared transactions are not listed per backend
    ours = {int(row[0]) for row in connection.exec_driver_sql(_IN_FLIGHT_SQL)}
    # The snapshot lists full 64-bit ids; pg_stat_activity their low 32 bits.
    in_flight = [int(x) for x in xip_text.split(",") if x and int(x) & 0xFFFFFFFF in ours]
    return (min(in_flight) if in_flight else int(xmax_text)) - 1


__all__ = [
    "ARRIVAL_COLUMN",
    "ARRIVAL_DEFAULT_SQL",
    "RAW_TABLES",
    "arrival_horizon",
    "position_name",
    "position_of",
]
