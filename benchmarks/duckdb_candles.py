"""The DuckDB peer of ``mds backfill --kind candles``: a bare script, as a user would write it.

Usage: python benchmarks/duckdb_candles.py URL   (sqlite:///path or postgresql://user@host:port/db)

On the same database as ``mds``, through DuckDB's scanner extension for it (installed from
PyPI as ``duckdb-extension-sqlite-scanner`` / ``-postgres-scanner``, the ``bench`` extra):
one GROUP BY for the one-minute candles (open and close by the (ts, seq) order, mid price),
the six higher timeframes rolled up from them (UTC day start, the ``mds`` default), and one
INSERT of all seven into ``candles``. Its output is compared in full against ours by
``benchmarks/peers.py``. It imports nothing but DuckDB, so its start-up is DuckDB's own.
"""

import importlib
import pathlib
import sys
from urllib.parse import unquote, urlsplit

import duckdb

#: Higher timeframes and their bucket size in ms; with the UTC day start every bucket
#: start is a multiple of its size.
ROLL_UPS = [
    ("5m", 300_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("4h", 14_400_000),
    ("1d", 86_400_000),
]

# The order of ticks in a minute is (ts, seq); seq < 1,000,000 (it numbers ticks with
# equal ts), so ts * 1,000,000 + seq orders them and fits in a BIGINT until the year 2262.
MINUTES = """
CREATE TEMP TABLE m1 AS
SELECT symbol, ts - ts % 60000 AS ts_open,
       arg_min((bid + ask) * 0.5, ts * 1000000 + seq) AS open,
       max((bid + ask) * 0.5) AS high,
       min((bid + ask) * 0.5) AS low,
       arg_max((bid + ask) * 0.5, ts * 1000000 + seq) AS close,
       sum(coalesce(volume, 1.0)) AS volume,
       count(*) AS tick_count
FROM db.ticks
GROUP BY symbol, ts_open
"""

INSERT = """
INSERT INTO db.candles (symbol, timeframe, ts_open, open, high, low, close, volume, tick_count)
SELECT symbol, '1m', ts_open, open, high, low, close, volume, tick_count FROM m1
UNION ALL
SELECT symbol, tf, ts_open - ts_open % size AS bucket,
       arg_min(open, ts_open), max(high), min(low), arg_max(close, ts_open),
       sum(volume), CAST(sum(tick_count) AS BIGINT)
FROM m1, (VALUES {roll_ups}) AS r(tf, size)
GROUP BY symbol, tf, bucket
"""


def load_scanner(connection: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load the scanner extension shipped in its PyPI package (no download)."""
    package = importlib.import_module(f"duckdb_extension_{name}")
    root = pathlib.Path(package.__file__).parent
    connection.load_extension(str(next(root.glob(f"extensions/*/{name}.duckdb_extension"))))


def attach(connection: duckdb.DuckDBPyConnection, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        load_scanner(connection, "sqlite_scanner")
        connection.execute(f"ATTACH '{parts.path[1:]}' AS db (TYPE sqlite)")
        return
    load_scanner(connection, "postgres_scanner")
    dsn = (
        f"host={parts.hostname} port={parts.port or 5432} dbname={parts.path[1:]} "
        f"user={unquote(parts.username or 'postgres')}"
    )
    connection.execute(f"ATTACH '{dsn}' AS db (TYPE postgres)")


def main() -> None:
    connection = duckdb.connect()
    attach(connection, sys.argv[1])
    connection.execute(MINUTES)
    roll_ups = ", ".join(f"('{tf}', {size})" for tf, size in ROLL_UPS)
    connection.execute(INSERT.format(roll_ups=roll_ups))
    connection.close()


if __name__ == "__main__":
    main()
