"""Column-wise upserts: numpy arrays in, rows in the table, no per-row Python on PostgreSQL.

``upsert`` takes rows as tuples; a service that computed its results as numpy columns
would build one tuple per row only for the driver to take them apart again. Here:

- PostgreSQL: the columns are packed into PostgreSQL's binary ``COPY`` format with one
  numpy structured array (big-endian values, each behind its length), streamed into a
  temporary table, and upserted from it in one statement. A batch of 5,000 rows costs a
  few milliseconds of Python instead of a ``write_row`` per row.
- SQLite: the rows of one float matrix in multi-row ``INSERT ... VALUES ... ON CONFLICT
  DO UPDATE`` statements, as ``insert_columns`` below does (``executemany`` of one row per
  statement cost twice as much: 0.47 s against 0.20 s for the 100,000 rows of a DOM
  catch-up).

``insert_columns`` is the bulk load of raw rows (``mds ingest``), where the rows are new
or already stored and nothing is overwritten:

- PostgreSQL: the same binary ``COPY``, straight into the table when the caller knows no
  row is stored yet (no staging, no conflict check), else through the stage with
  ``ON CONFLICT DO NOTHING``.
- SQLite: the numbers go to the driver as rows of one float matrix (``tolist()`` of a
  2-D array: no tuple per row), a few hundred rows per ``INSERT ... VALUES (...), (...)``
  statement: ``executemany`` runs and resets the statement once per row and reads a
  Python tuple per row, which cost more than the binding. Integer columns are cast back
  from the floats in SQL, exact below 2**53; a NaN binds as NULL.

Supported columns: ``BIGINT``, ``INTEGER``, ``SMALLINT`` and ``DOUBLE PRECISION`` from
arrays, and text columns from one ``str`` shared by every row (e.g. the symbol of a
batch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
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
    select,
    text,
)
from sqlalchemy.engine import Engine

from market_data_services.storage.upsert import (
    COPY_THRESHOLD,
    _insert_sql,
    _key_and_update,
    insert,
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
    if connection.dialect.name == "sqlite":
        key_names, update_names = _key_and_update(table, names, key, update)
        return _sqlite_insert_matrix(
            connection, table, columns, count, conflict=(key_names, update_names)
        )
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


def upsert_columns_in_range(
    connection: Connection, table: Table, columns: Mapping[str, ColumnValues], *, ranged: str
) -> int:
    """``upsert_columns`` of rows that share their text columns (e.g. a symbol and a
    timeframe); on PostgreSQL, when no stored row shares those and has ``ranged`` within
    the rows' range (a first build), the rows go in by binary COPY straight into the table
    instead: no staging table and no ``ON CONFLICT``, which cost the server several µs a
    row. Should a writer store one of them meanwhile, the COPY is undone and the rows are
    upserted."""
    if connection.dialect.name != "postgresql":
        return upsert_columns(connection, table, columns)
    return _plainly_if_new(
        connection, table, columns, ranged, lambda: upsert_columns(connection, table, columns)
    )


def insert_columns_in_range(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    *,
    ranged: str,
    key: Sequence[str],
) -> int:
    """``insert_columns(..., skip_existing=key)`` of rows that share their text columns
    (e.g. a symbol): when no stored row shares those and has ``ranged`` within the rows'
    range (the common first load), the rows go in plainly, with no conflict check (on
    PostgreSQL a binary COPY straight into the table). Should a writer that holds no
    lock of ours store one of them meanwhile (PostgreSQL; on SQLite the write lock is
    held), the plain insert is undone and the rows go in skipping the stored ones."""

    def skipping() -> int:
        return insert_columns(connection, table, columns, skip_existing=key)

    if connection.dialect.name != "postgresql":
        if _stored_in_range(connection, table, columns, ranged):
            return skipping()
        return insert_columns(connection, table, columns)
    return _plainly_if_new(connection, table, columns, ranged, skipping)


def _stored_in_range(
    connection: Connection, table: Table, columns: Mapping[str, ColumnValues], ranged: str
) -> bool:
    """Whether a stored row shares the text columns of ``columns`` and has ``ranged``
    between the smallest and the largest of theirs."""
    values = columns[ranged]
    if isinstance(values, str) or not len(values):
        return True  # nothing to range over: take the careful path
    query = (
        select(table.c[ranged])
        .where(table.c[ranged].between(int(values.min()), int(values.max())))
        .limit(1)
    )
    for name, value in columns.items():
        if isinstance(value, str):
            query = query.where(table.c[name] == value)
    return connection.execute(query).first() is not None


def _plainly_if_new(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    ranged: str,
    otherwise: Callable[[], int],
) -> int:
    """PostgreSQL: a binary COPY straight into ``table`` when nothing is stored in the
    rows' range, in a savepoint; ``otherwise()`` when something is, or when a row that
    another transaction committed meanwhile makes the COPY fail on a unique key."""
    if _stored_in_range(connection, table, columns, ranged):
        return otherwise()
    try:
        with connection.begin_nested():
            return insert_columns(connection, table, columns)
    except Exception as error:
        if not _is_unique_violation(error):
            raise
    return otherwise()


def _is_unique_violation(error: BaseException) -> bool:
    """A unique-key violation (SQLSTATE 23505), raised by the driver itself (our COPY
    runs on the driver's cursor) or wrapped by SQLAlchemy."""
    cause = getattr(error, "orig", None) or error
    return getattr(cause, "sqlstate", None) == "23505"


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
        # One per connection, emptied before and after use, with every column of the
        # table: a call may name fewer (ticks without volumes) than an earlier one on
        # the same connection did. Keys within a call are distinct (as for ``upsert``
        # with an update), so no arrival order is kept.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS "
            f"SELECT * FROM {dialect.identifier_preparer.format_table(table)} WITH NO DATA"
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


#: SQLite's smallest limit on parameters in one statement (older builds; 32766 since 3.32).
_SQLITE_MAX_PARAMETERS = 999
#: Statements per ``executemany`` call: about 16,000 rows of four numbers.
_SQLITE_STATEMENTS_PER_CALL = 64
#: Integers a float64 holds exactly: the SQLite path sends integer columns as floats.
_EXACT_IN_FLOAT = 2**53


def insert_columns(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    *,
    skip_existing: Sequence[str] | None = None,
) -> int:
    """Insert the rows held column-wise in ``columns`` (arrays of one length, or one
    ``str`` for every row), in array order, inside the caller's transaction.

    ``skip_existing`` is a unique key: a row whose key is stored (or repeats an earlier
    row of the call) is skipped, as ``upsert(..., update=())`` does. Without it the
    caller knows none is stored, and a conflict raises an integrity error (SQLAlchemy's
    on SQLite, psycopg's from the COPY on PostgreSQL) and fails the transaction. A NaN in a float
    column is stored as NULL. Returns the rows inserted.
    """
    names = list(columns)
    lengths = {len(v) for v in columns.values() if not isinstance(v, str)}
    if len(lengths) > 1:
        raise ValueError(f"{table.name}: columns of different lengths {sorted(lengths)}")
    count = lengths.pop() if lengths else 0
    unknown = [c for c in names if c not in table.c]
    if unknown:
        raise ValueError(
            f"{table.name} has no column {unknown[0]!r}; columns: {', '.join(table.c.keys())}"
        )
    if count == 0:
        return 0
    if connection.dialect.name == "postgresql":
        if _has_nan(columns):  # binary COPY of arrays has no NULL: row by row, rare
            return _insert_rows(connection, table, columns, count, skip_existing=skip_existing)
        if skip_existing is not None:
            return _binary_copy_upsert(
                connection, table, columns, count, key=skip_existing, update=()
            )
        return _binary_copy_insert(connection, table, columns, count)
    conflict = None if skip_existing is None else (skip_existing, ())
    return _sqlite_insert_matrix(connection, table, columns, count, conflict=conflict)


def _has_nan(columns: Mapping[str, ColumnValues]) -> bool:
    return any(
        not isinstance(v, str) and v.dtype.kind == "f" and bool(np.isnan(v).any())
        for v in columns.values()
    )


def _insert_rows(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    count: int,
    *,
    skip_existing: Sequence[str] | None,
) -> int:
    """The columns as tuples, NaN as None, through ``insert`` or ``upsert``."""
    values: list[Any] = []
    for value in columns.values():
        if isinstance(value, str):
            values.append(itertools.repeat(value, count))
        elif value.dtype.kind == "f":
            values.append([None if math.isnan(v) else v for v in value.tolist()])
        else:
            values.append(value.tolist())
    rows = zip(*values, strict=False)
    if skip_existing is None:
        return insert(connection, table, rows, columns=list(columns), batch_size=count)
    return upsert(
        connection,
        table,
        rows,
        columns=list(columns),
        key=skip_existing,
        update=(),
        batch_size=count,
    )


def _binary_copy_insert(
    connection: Connection, table: Table, columns: Mapping[str, ColumnValues], count: int
) -> int:
    payload = _copy_payload(table, columns, count)
    preparer = connection.dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(c) for c in columns)
    raw = connection.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(
            f"COPY {preparer.format_table(table)} ({column_list}) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(payload)
    return count


def _sqlite_insert_matrix(
    connection: Connection,
    table: Table,
    columns: Mapping[str, ColumnValues],
    count: int,
    *,
    conflict: tuple[Sequence[str], Sequence[str]] | None,
) -> int:
    """SQLite: constants as the first parameters (``?1``...), the arrays as the rows of
    one float matrix, ``per_statement`` rows per ``INSERT``. ``conflict`` is the key and
    the columns to overwrite when a row's key is stored (none: the row is skipped)."""
    preparer = connection.dialect.identifier_preparer
    constants = [v for v in columns.values() if isinstance(v, str)]
    arrays: list[npt.NDArray[Any]] = [v for v in columns.values() if not isinstance(v, str)]
    places: list[str] = []
    constant_number = 0
    for name, value in columns.items():
        if isinstance(value, str):
            constant_number += 1
            places.append(f"?{constant_number}")
        elif isinstance(table.c[name].type, Integer):  # BigInteger and SmallInteger too
            if len(value) and int(np.abs(value).max()) >= _EXACT_IN_FLOAT:
                raise ValueError(f"{table.name}.{name}: values beyond 2**53 are not supported")
            places.append("CAST(? AS INTEGER)")
        else:
            places.append("?")
    matrix = np.empty((count, len(arrays)), dtype=np.float64)
    for i, array in enumerate(arrays):
        matrix[:, i] = array
    row = f"({', '.join(places)})"
    column_list = ", ".join(preparer.quote(c) for c in columns)
    head = f"INSERT INTO {preparer.format_table(table)} ({column_list}) VALUES "
    tail = ""
    if conflict is not None:
        key_names, update_names = conflict
        tail = f" ON CONFLICT ({', '.join(preparer.quote(c) for c in key_names)}) "
        if update_names:
            assignments = (
                f"{preparer.quote(c)} = excluded.{preparer.quote(c)}" for c in update_names
            )
            tail += f"DO UPDATE SET {', '.join(assignments)}"
        else:
            tail += "DO NOTHING"
    per_statement = max(1, (_SQLITE_MAX_PARAMETERS - len(constants)) // max(1, len(arrays)))
    full = count - count % per_statement
    written = 0
    if full:
        sql = head + ", ".join([row] * per_statement) + tail
        flat = matrix[:full].reshape(full // per_statement, per_statement * len(arrays))
        # A slice at a time: the Python floats of a whole chunk (a 250,000-tick chunk
        # makes a million, 40 MB) would otherwise be alive at once.
        for start in range(0, len(flat), _SQLITE_STATEMENTS_PER_CALL):
            piece = flat[start : start + _SQLITE_STATEMENTS_PER_CALL]
            params = [(*constants, *values) for values in piece.tolist()]
            written += _changes(connection.exec_driver_sql(sql, params).rowcount)
    if count > full:
        sql = head + ", ".join([row] * (count - full)) + tail
        params = [(*constants, *matrix[full:].reshape(-1).tolist())]
        written += _changes(connection.exec_driver_sql(sql, params).rowcount)
    return written


def _changes(rowcount: int | None) -> int:
    if rowcount is None or rowcount < 0:  # pragma: no cover - sqlite3 reports it
        raise RuntimeError("the SQLite driver did not report the rows inserted")
    return rowcount


def refresh_statistics(engine: Engine, table: Table) -> None:
    """After a large load, refresh PostgreSQL's planner statistics of ``table`` (ANALYZE),
    so queries use its indexes at once instead of waiting for autovacuum. SQLite: nothing."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text(f"ANALYZE {table.name}"))


__all__ = [
    "insert_columns",
    "insert_columns_in_range",
    "refresh_statistics",
    "upsert_columns",
    "upsert_columns_in_range",
]
