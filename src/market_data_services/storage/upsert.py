"""Bulk upserts that read the same on SQLite and PostgreSQL.

Both speak ``INSERT ... ON CONFLICT (key) DO UPDATE SET c = excluded.c`` (SQLite since
3.24), so one statement text serves both; only the placeholder differs. Rows go to the
driver as plain tuples: no per-row dict or SQLAlchemy parameter processing, which is most
of the cost of a Core insert of a million rows.

On SQLite the rows go to ``executemany``. On PostgreSQL a large batch is streamed with
``COPY`` into a temporary table and upserted from there in one statement (in arrival
order), many times faster than row-by-row inserts over the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

#: Rows handed to one ``executemany`` call or one COPY.
DEFAULT_BATCH_SIZE = 20_000
#: From this many rows in a batch, PostgreSQL upserts go through COPY.
COPY_THRESHOLD = 500


def upsert_sql(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> str:
    """The statement text for positional rows of ``columns``.

    ``key`` is the conflict target (default: the primary key). ``update`` lists the
    columns a conflicting row overwrites (default: every column not in ``key``); an
    empty ``update`` keeps the stored row (``DO NOTHING``).
    """
    names = list(columns)
    unknown = [c for c in names if c not in table.c]
    if unknown:
        raise ValueError(
            f"{table.name} has no column {unknown[0]!r}; columns: {', '.join(table.c.keys())}"
        )
    key_names, update_names = _key_and_update(table, names, key, update)
    if not key_names:
        raise ValueError(f"{table.name}: a conflict key is needed (the table has no primary key)")
    missing = [c for c in key_names if c not in names]
    if missing:
        raise ValueError(f"{table.name}: the rows must include the key column {missing[0]!r}")

    if dialect.paramstyle == "qmark":
        mark = "?"
    elif dialect.paramstyle in ("format", "pyformat"):
        mark = "%s"
    else:  # pragma: no cover - neither sqlite3 nor psycopg
        raise ValueError(f"unsupported DBAPI paramstyle {dialect.paramstyle!r}")
    if dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"upsert supports sqlite and postgresql, not {dialect.name!r}")

    values = ", ".join([mark] * len(names))
    return _insert_sql(
        dialect,
        table,
        names=names,
        key_names=key_names,
        update_names=update_names,
        source=f"VALUES ({values})",
    )


def _key_and_update(
    table: Table, names: Sequence[str], key: Sequence[str] | None, update: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    key_names = [c.name for c in table.primary_key.columns] if key is None else list(key)
    update_names = [c for c in names if c not in key_names] if update is None else list(update)
    return key_names, update_names


def _insert_sql(
    dialect: Dialect,
    table: Table,
    *,
    names: Sequence[str],
    key_names: Sequence[str],
    update_names: Sequence[str],
    source: str,
) -> str:
    quote = dialect.identifier_preparer.quote
    target = dialect.identifier_preparer.format_table(table)
    column_list = ", ".join(quote(c) for c in names)
    conflict = ", ".join(quote(c) for c in key_names)
    if update_names:
        assignments = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update_names)
        action = f"DO UPDATE SET {assignments}"
    else:
        action = "DO NOTHING"
    return f"INSERT INTO {target} ({column_list}) {source} ON CONFLICT ({conflict}) {action}"


def _copy_upsert(
    connection: Connection,
    table: Table,
    *,
    names: Sequence[str],
    key_names: Sequence[str],
    update_names: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """PostgreSQL: COPY ``rows`` into a temporary table, then upsert from it in order."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    stage = quote(f"mds_stage_{table.name}")
    column_list = ", ".join(quote(c) for c in names)
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        # One per connection; ``mds_ord`` keeps the arrival order. Emptied before and after
        # use, so a failed statement cannot leave rows for the next caller.
        # Every column of the table (no constraints come along), so one stage serves
        # calls that write different column sets on the same connection.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS "
            f"SELECT * FROM {dialect.identifier_preparer.format_table(table)} WITH NO DATA"
        )
        cursor.execute(
            f"ALTER TABLE {stage} ADD COLUMN IF NOT EXISTS mds_ord bigint "
            f"GENERATED ALWAYS AS IDENTITY"
        )
        cursor.execute(f"TRUNCATE {stage}")
        with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        source = f"SELECT {column_list} FROM {stage} ORDER BY mds_ord"
        cursor.execute(
            _insert_sql(
                dialect,
                table,
                names=names,
                key_names=key_names,
                update_names=update_names,
                source=source,
            )
        )
        count: int = cursor.rowcount
        cursor.execute(f"TRUNCATE {stage}")
    return count


def upsert(
    connection: Connection,
    table: Table,
    rows: Iterable[Sequence[Any]] | Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Insert ``rows`` into ``table``, overwriting (or keeping) rows whose key exists.

    ``rows`` are tuples in the order of ``columns``, or mappings (then ``columns``
    defaults to the first mapping's keys). Runs inside the caller's transaction.
    Returns the number of rows the database reports as written (inserted plus updated;
    with ``update=()`` only the inserted ones), or -1 where the driver does not say.

    With an ``update``, the keys within one call must be distinct (PostgreSQL refuses to
    update one row twice in a statement); with ``update=()`` repeats are skipped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    iterator = iter(rows)
    first_batch = list(islice(iterator, batch_size))
    if not first_batch:
        return 0
    if isinstance(first_batch[0], Mapping):
        names = list(columns) if columns is not None else list(first_batch[0])
        as_tuples = True
    else:
        if columns is None:
            raise ValueError("columns is required when rows are tuples")
        names = list(columns)
        as_tuples = False
    sql = upsert_sql(connection.dialect, table, names, key=key, update=update)
    key_names, update_names = _key_and_update(table, names, key, update)
    use_copy = connection.dialect.name == "postgresql"

    written = 0
    batch: list[Any] = first_batch
    while batch:
        params = [tuple(row[c] for c in names) for row in batch] if as_tuples else batch
        if use_copy and len(params) >= COPY_THRESHOLD:
            count = _copy_upsert(
                connection,
                table,
                names=names,
                key_names=key_names,
                update_names=update_names,
                rows=params,
            )
        else:
            count = connection.exec_driver_sql(sql, params).rowcount
        written = -1 if written < 0 or count is None or count < 0 else written + count
        batch = list(islice(iterator, batch_size))
    return written


def insert(
    connection: Connection,
    table: Table,
    rows: Iterable[Sequence[Any]],
    *,
    columns: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Insert rows known not to conflict with stored ones: the fastest path, ``COPY``
    straight into the table on PostgreSQL, plain ``executemany`` on SQLite. A conflict
    raises IntegrityError and rolls back the caller's transaction. Returns the count."""
    names = list(columns)
    unknown = [c for c in names if c not in table.c]
    if unknown:
        raise ValueError(
            f"{table.name} has no column {unknown[0]!r}; columns: {', '.join(table.c.keys())}"
        )
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    target = preparer.format_table(table)
    column_list = ", ".join(preparer.quote(c) for c in names)
    iterator = iter(rows)
    total = 0
    if dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy,
        ):
            for row in iterator:
                copy.write_row(row)
                total += 1
        return total
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {target} ({column_list}) VALUES ({', '.join([mark] * len(names))})"
    batch = list(islice(iterator, batch_size))
    while batch:
        connection.exec_driver_sql(sql, batch)
        total += len(batch)
        batch = list(islice(iterator, batch_size))
    return total


__all__ = ["COPY_THRESHOLD", "DEFAULT_BATCH_SIZE", "insert", "upsert", "upsert_sql"]
