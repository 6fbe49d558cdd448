"""Tick ingest rate against its peers (issue 13), each contender in its own process.

The same LEAN files (all the real ticks in ../shared/data: 4 series, 52 gzip files,
3.07 million ticks) go into the same empty ``ticks`` table, migrated by us:

SQLite
  ours    ``ingest_ticks`` per series, as ``mds ingest ticks --layout lean`` runs it:
          validation, crossed/locked counts, seq numbering, the write lock, the report
  duckdb  a bare DuckDB script: ``read_csv`` of the gzip files, the time from the file
          name, seq by ``row_number()``, finite positive prices, ``INSERT`` through its
          sqlite scanner (``duckdb-extension-sqlite-scanner`` from PyPI)
PostgreSQL (with ``--pg URL``, the server's maintenance database, e.g.
postgresql://postgres@127.0.0.1:5432/postgres; a scratch database is made per run)
  ours    the same ``ingest_ticks``
  copy    ``COPY ticks (symbol, ts, seq, bid, ask) FROM STDIN`` fed the rows already as
          CSV text (built before the clock starts): the server's part alone, a floor
  duckdb  the DuckDB script through its postgres scanner

Reported: ticks per second of the load inside each process (imports and interpreter
start excluded; the whole process is printed too), the median of ``--rounds``
interleaved rounds, and ours / peer as a rate ratio (above 1.0: ours is faster).
Stored rows are compared in full with the peer's after the first round.

Usage: python benchmarks/ingest_peers.py [--rounds 3] [--pg URL] [--workdir DIR]
From Python: ``measure(rounds=3, pg=None) -> dict`` returns the same figures.
"""

# Each child imports only what its contender needs, so imports sit inside functions.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MDS_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
#: (folder, pair, symbol, zone for ours, hours the feed's time is behind UTC)
SERIES = [
    ("lean_fxcm", "eurusd", "FXCM:EUR/USD", "UTC-05:00", 5),
    ("lean_fxcm", "nzdusd", "FXCM:NZD/USD", "UTC-05:00", 5),
    ("lean_oanda", "eurusd", "OANDA:EUR/USD", "UTC", 0),
    ("lean_oanda", "nzdusd", "OANDA:NZD/USD", "UTC", 0),
]
TICK_COLUMNS = "symbol, ts, seq, bid, ask"


# -- children: each measured load runs in a fresh process -------------------------------------


def child_ours(url: str) -> dict[str, Any]:
    from market_data_services.ingest import ingest_ticks
    from market_data_services.storage import create_engine

    engine = create_engine(url)
    started = time.perf_counter()
    total = 0
    for folder, pair, symbol, zone, _hours in SERIES:
        path = DATA / "forex_ticks" / folder / pair
        report = ingest_ticks(engine, path, symbol=symbol, tz=zone, layout="lean")
        total += report.written
    return {"seconds": time.perf_counter() - started, "rows": total}


def _duckdb_insert_sql(target: str, files: str, hours: int) -> str:
    return f"""
        INSERT INTO {target} ({TICK_COLUMNS})
        SELECT $symbol, ts, row_number() OVER (PARTITION BY ts ORDER BY line) - 1, bid, ask
        FROM (
            SELECT epoch_ms(strptime(regexp_extract(filename, '(\\d{{8}})_[^/]*$', 1),
                                     '%Y%m%d')) + {hours * 3_600_000} + ms AS ts,
                   bid, ask, row_number() OVER () AS line
            FROM read_csv('{files}', header = false, filename = true,
                          columns = {{'ms': 'BIGINT', 'bid': 'DOUBLE', 'ask': 'DOUBLE'}}))
        WHERE isfinite(bid) AND isfinite(ask) AND bid > 0 AND ask > 0"""


def child_duckdb(url: str) -> dict[str, Any]:
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    if url.startswith("sqlite:///"):
        import duckdb_extension_sqlite_scanner as extension

        name, attach = "sqlite_scanner", f"ATTACH '{url.removeprefix('sqlite:///')}' AS db "
        attach += "(TYPE sqlite)"
    else:
        import duckdb_extension_postgres_scanner as extension

        name, attach = "postgres_scanner", f"ATTACH '{_libpq(url)}' AS db (TYPE postgres)"
    found = next(Path(extension.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
    connection.execute(f"LOAD '{found}'")
    connection.execute(attach)
    total = 0
    for folder, pair, symbol, _zone, hours in SERIES:
        files = DATA / "forex_ticks" / folder / pair / "*.csv.gz"
        sql = _duckdb_insert_sql("db.ticks", str(files), hours)
        row = connection.execute(sql, {"symbol": symbol}).fetchone()
        total += int(row[0]) if row else 0
    connection.close()
    return {"seconds": time.perf_counter() - started, "rows": total}


def child_copy(url: str) -> dict[str, Any]:
    import psycopg

    text = _copy_text()  # before the clock: the peer is the server's part alone
    started = time.perf_counter()
    with (
        psycopg.connect(_libpq(url)) as connection,
        connection.cursor() as cursor,
        cursor.copy(f"COPY ticks ({TICK_COLUMNS}) FROM STDIN (FORMAT csv)") as copy,
    ):
        for start in range(0, len(text), 1 << 20):
            copy.write(text[start : start + (1 << 20)])
    return {"seconds": time.perf_counter() - started, "rows": text.count(b"\n")}


def _copy_text() -> bytes:
    """Every tick as ``symbol,ts,seq,bid,ask`` CSV lines, seq as the stored one."""
    import gzip
    import io
    from datetime import UTC, datetime

    import numpy as np

    out = io.BytesIO()
    for folder, pair, symbol, _zone, hours in SERIES:
        for path in sorted((DATA / "forex_ticks" / folder / pair).glob("*.csv.gz")):
            day = datetime.strptime(path.name[:8], "%Y%m%d").replace(tzinfo=UTC)
            values = np.loadtxt(io.BytesIO(gzip.decompress(path.read_bytes())), delimiter=",")
            ts = values[:, 0].astype(np.int64) + int(day.timestamp()) * 1000 + hours * 3_600_000
            seq = np.zeros(len(ts), dtype=np.int64)
            same = np.flatnonzero(ts[1:] == ts[:-1]) + 1  # equal times are adjacent in LEAN
            for i in same.tolist():
                seq[i] = seq[i - 1] + 1
            prices = values[:, 1].tolist(), values[:, 2].tolist()
            for t, q, b, a in zip(ts.tolist(), seq.tolist(), *prices, strict=True):
                out.write(f"{symbol},{t},{q},{b!r},{a!r}\n".encode())
    return out.getvalue()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


CHILDREN = {"ours": child_ours, "duckdb": child_duckdb, "copy": child_copy}


# -- the parent: fresh databases, interleaved rounds, checks ----------------------------------


def _run_child(contender: str, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", contender, url],
        capture_output=True,
        check=False,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{contender} on {url} failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = time.perf_counter() - started
    return figures


def _fresh_sqlite(workdir: Path, name: str) -> str:
    from market_data_services.storage import create_engine, upgrade

    path = workdir / f"{name}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _fresh_postgres(maintenance_url: str, name: str) -> str:
    import psycopg

    from market_data_services.storage import create_engine, upgrade

    database = f"mds_bench_ingest_{name}"
    with psycopg.connect(_libpq(maintenance_url), autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {database}")
    base = maintenance_url.rsplit("/", 1)[0]
    url = f"{base}/{database}".replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _digest(url: str) -> str:
    """A hash of every stored tick, in key order: equal digests, equal tables."""
    from sqlalchemy import text

    from market_data_services.storage import create_engine

    engine = create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT {TICK_COLUMNS}, volume FROM ticks ORDER BY symbol, ts, seq")
        )
        for batch in iter(lambda: rows.fetchmany(100_000), []):
            digest.update(repr([tuple(r) for r in batch]).encode())
    engine.dispose()
    return digest.hexdigest()


def measure(
    *, rounds: int = 3, pg: str | None = None, workdir: Path = Path("/tmp/mds-bench-ingest")
) -> dict[str, Any]:
    """Rates (ticks/s) per backend and contender, medians of ``rounds`` interleaved
    rounds, and ``ratio`` ours / peer (rates: above 1.0, ours is faster)."""
    workdir.mkdir(parents=True, exist_ok=True)
    backends: dict[str, list[str]] = {"sqlite": ["ours", "duckdb"]}
    if pg:
        backends["postgresql"] = ["ours", "copy", "duckdb"]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number in range(rounds):
        for backend, contenders in backends.items():
            turn = number % len(contenders)  # each contender goes first in some round
            for contender in contenders[turn:] + contenders[:turn]:
                if backend == "sqlite":
                    url = _fresh_sqlite(workdir, contender)
                else:
                    assert pg is not None
                    url = _fresh_postgres(pg, contender)
                figures = _run_child(contender, url)
                if number == 0 and contender != "copy":
                    figures["digest"] = _digest(url)
                runs.setdefault((backend, contender), []).append(figures)
                print(
                    f"  round {number + 1} {backend:10} {contender:7} "
                    f"{figures['rows'] / figures['seconds'] / 1000:7.0f} k ticks/s "
                    f"(load {figures['seconds']:.2f} s, "
                    f"process {figures['process_seconds']:.2f} s)",
                    file=sys.stderr,
                )
    result: dict[str, Any] = {"rounds": rounds}
    for (backend, contender), figures in runs.items():
        rows = {f["rows"] for f in figures}
        result[f"{backend}/{contender}/rows"] = rows.pop() if len(rows) == 1 else sorted(rows)
        result[f"{backend}/{contender}/rate"] = statistics.median(
            f["rows"] / f["seconds"] for f in figures
        )
        result[f"{backend}/{contender}/process_rate"] = statistics.median(
            f["rows"] / f["process_seconds"] for f in figures
        )
        if "digest" in figures[0]:
            result[f"{backend}/{contender}/digest"] = figures[0]["digest"]
    for backend, contenders in backends.items():
        for peer in contenders[1:]:
            for kind in ("rate", "process_rate"):
                ours = result[f"{backend}/ours/{kind}"]
                result[f"{backend}/ours_vs_{peer}/{kind}"] = (
                    ours / result[f"{backend}/{peer}/{kind}"]
                )
        if f"{backend}/duckdb/digest" in result:
            result[f"{backend}/same_rows_as_duckdb"] = (
                result[f"{backend}/ours/digest"] == result[f"{backend}/duckdb/digest"]
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL maintenance database URL")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mds-bench-ingest"))
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, url = args.child
        print(json.dumps(CHILDREN[contender](url)))
        return
    result = measure(rounds=args.rounds, pg=args.pg, workdir=args.workdir)
    print(f"# ingest_peers.py  python {sys.version.split()[0]}  rounds={args.rounds} (median)")
    print("| backend | contender | ticks | k ticks/s (load) | k ticks/s (process) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for key in [k for k in result if k.endswith("/rate") and "_vs_" not in k]:
        backend, contender, _ = key.split("/")
        print(
            f"| {backend} | {contender} | {result[f'{backend}/{contender}/rows']:,} | "
            f"{result[key] / 1000:.0f} | "
            f"{result[f'{backend}/{contender}/process_rate'] / 1000:.0f} |"
        )
    print()
    print("| ratio, ours / peer (rate; >= 1.0 meets) | load | process |")
    print("| --- | ---: | ---: |")
    for key in [k for k in result if "_vs_" in k and k.endswith("/rate")]:
        backend, versus, _ = key.split("/")
        print(
            f"| {backend} {versus.replace('_', ' ')} | {result[key]:.2f} | "
            f"{result[key.replace('/rate', '/process_rate')]:.2f} |"
        )
    for key in [k for k in result if k.endswith("same_rows_as_duckdb")]:
        print(f"\n{key}: {result[key]} (every stored tick compared, in key order)")


if __name__ == "__main__":
    main()
