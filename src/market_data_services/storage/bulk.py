"""Column-wise upserts: numpy arrays in, rows in the table, no per-row Python on PostgreSQL.

``upsert`` takes rows as tuples; a service that computed its results as numpy columns
would build one tuple per row only for the driver to take them apart again. Here:

- PostgreSQL: the columns are packed into PostgreSQL's binary ``COPY`` format with one
  numpy structured array (big-endian values, each behind its length), streamed into a
  temporary table, and upserted from it in one statement. A batch of 5,000 rows costs a
  few milliseconds of Python instead of a ``write_row`` per row.
- SQLite: one ``executemany`` of the rows (SQLite is in-process; binding is the cost).

Supported columns: ``BIGINT``, ``INTEGER``, ``SMALLINT`` and ``DOUBLE PRECISION`` from
arrays, and text columns from one ``str`` shared by every row (e.g. the symbol of a
batch).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    Connection,
    Double,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
    text,
)
from sqlalchemy.engine import Engine

from market_data_services.storage.upsert import (
    COPY_THRESHOLD,
    _insert_sql,
    _key_and_update,
    upsert,
)

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)

ColumnValues = npt.NDArray[Any] | str


def _binary_dtype(table: Table, name: str, value: ColumnValues) -> tuple[str, int]:
    """The big-endian numpy type and byte width of column ``name`` in binary COPY."""
    column_type = table.c[name].type
    if isinstance(value, str):
        if not isinstance(column_type, String):
            raise ValueError(f"{table.name}.{name}: one text value given for a non-text column")
        return f"S{len(value.encode('utf-8'))}", len(value.encode("utf-8"))
    if isinstance(column_type, BigInteger):
        return ">i8", 8
    if isinstance(column_type, SmallInteger):
        return ">i2", 2
    if isinstance(column_type, Integer):
        return ">i4", 4
    if isinstance(column_type, Double | Float):
        return ">f8", 8
    raise ValueError(f"{table.name}.{name}: {column_type} columns are not supported here")


def _copy_payload(table: Table, columns: Mapping[str, ColumnValues], count: int) -> bytes:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    widths: list[int] = []
    for i, (name, value) in enumerate(columns.items()):
        dtype, width = _binary_dtype(table, name, value)
        fields.append((f"l{i}", ">i4"))
        if width:  # an empty text is its length alone
            fields.append((f"v{i}", dtype))
        widths.append(width)
    rows = np.empty(count, dtype=np.dtype(fields))
    rows["count"] = len(columns)
    for i, value in enumerate(columns.values()):
        rows[f"l{i}"] = widths[i]
        if isinstance(value, str):
            if widths[i]:
                rows[f"v{i}"] = value.encode("utf-8")
        else:
            rows[f"v{i}"] = value
    return _HEADER + rows.tobytes() + _TRAILER


def upsert_columns(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> int:
    """Upsert the rows held column-wise in ``columns`` (arrays of one length, or one
    ``str`` for every row); ``key`` and ``update`` as for ``upsert``. Runs inside the
    caller's transaction and returns the rows written (-1 when the driver does not say).
    """
    names = list(columns)
    lengths = {len(v) for v in columns.values() if not isinstance(v, str)}
    if len(lengths) > 1:
        raise ValueError(f"{table.name}: columns of different lengths {sorted(lengths)}")
    count = lengths.pop() if lengths else 0
    if count == 0:
        return 0
    if connection.dialect.name == "postgresql" and count >= COPY_THRESHOLD:
        return _binary_copy_upsert(connection, table, columns, count, key=key, update=update)
    values = [
        itertools.repeat(v, count) if isinstance(v, str) else v.tolist() for v in columns.values()
    ]
    return upsert(
        connection,
        table,
        zip(*values, strict=False),
        columns=names,
        key=key,
        update=update,
        batch_size=count,
    )


def _binary_copy_upsert(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    count: int,
    *,
    key: Sequence[str] | None,
    update: Sequence[str] | None,
) -> int:
    names = list(columns)
    key_names, update_names = _key_and_update(table, names, key, update)
    payload = _copy_payload(table, columns, count)
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    stage = quote(f"mds_bulk_{table.name}")
    column_list = ", ".join(quote(c) for c in names)
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        # One per connection, emptied before and after use. Keys within a call are
        # distinct (as for ``upsert`` with an update), so no arrival order is kept.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS "
            f"SELECT {column_list} FROM {dialect.identifier_preparer.format_table(table)} "
            f"WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {stage}")
        with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        cursor.execute(
            _insert_sql(
                dialect,
                table,
                names=names,
                key_names=key_names,
                update_names=update_names,
                source=f"SELECT {column_list} FROM {stage}",
            )
        )
        written: int = cursor.rowcount
        cursor.execute(f"TRUNCATE {stage}")
    return written


def refresh_statistics(engine: Engine, table: Table) -> None:
    """After a large load, refresh PostgreSQL's planner statistics of ``table`` (ANALYZE),
    so queries use its indexes at once instead of waiting for autovacuum. SQLite: nothing."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text(f"ANALYZE {table.name}"))


__all__ = ["refresh_statistics", "upsert_columns"]
