"""Reading derived data back (issue 15): ``mds export`` of many candle rows, and
``GET /api/v1/candles`` of 10,000 rows, each beside a peer measured in the same run.

Fills a database with ROWS one-minute candles of one symbol (generated in SQL: a
recursive CTE on SQLite, generate_series on PostgreSQL), then:

- export: ``mds export candles ... --format csv`` as a child process (peak RSS from
  the kernel's rusage, rows per second), beside the peer: a Python process that runs
  the same SELECT through the driver's cursor (fetchmany) into ``csv.writer``;
- api: RUNS requests of ``/api/v1/candles?...&from=...&limit=10000`` on a live server
  over loopback, p50/p99, beside the same query straight through the driver
  (``fetchall`` of the same 10,000 rows), and the ratio.

    .venv/bin/python benchmarks/read_derived.py [--db URL] [--rows N] [--runs N]
        [--only api|export] [--folder DIR]

Without ``--db`` the database is a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Engine

from market_data_services.app.api import make_api
from market_data_services.app.server import HttpServer, make_app
from market_data_services.storage import create_engine, upgrade

SYMBOL = "EUR/USD"
#: 2000-01-01T00:00:00Z: the first candle.
START_MS = 946_684_800_000
PAGE = 10_000
_SELECT = (
    "SELECT ts_open, open, high, low, close, volume, tick_count FROM candles "
    "WHERE symbol = {p} AND timeframe = '1m' AND ts_open >= {p} ORDER BY ts_open LIMIT {p}"
)

_PEER_EXPORT = r"""
import csv, sys, time
from market_data_services.storage import create_engine
engine = create_engine(sys.argv[1])
sql, dialect = sys.argv[2], engine.dialect.name
with engine.connect() as connection, open(sys.argv[3], "w", newline="") as out:
    raw = connection.connection.driver_connection
    cursor = raw.cursor(name="peer") if dialect == "postgresql" else raw.cursor()
    cursor.execute(sql.replace("{p}", "%s" if dialect == "postgresql" else "?"),
                   ("EUR/USD", 0, 2**62))
    writer = csv.writer(out)
    while rows := cursor.fetchmany(50_000):
        writer.writerows(rows)
"""


def fill(engine: Engine, rows: int) -> None:
    """ROWS one-minute candles of SYMBOL from START_MS, unless they are there already."""
    with engine.begin() as connection:
        have = connection.execute(
            text("SELECT count(*) FROM candles WHERE symbol = :s AND timeframe = '1m'"),
            {"s": SYMBOL},
        ).scalar()
        if have == rows:
            return
        connection.execute(text("DELETE FROM candles"))
        values = (
            "'EUR/USD', '1m', {ts}, 1.1 + ({i} % 1000) * 1e-5, 1.1 + ({i} % 1000) * 1e-5 + 2e-4,"
            " 1.1 + ({i} % 1000) * 1e-5 - 1e-4, 1.1 + ({i} % 997) * 1e-5, 12.0, 12"
        )
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "INSERT INTO candles SELECT "
                    + values.format(ts=f"{START_MS} + i * 60000", i="i")
                    + " FROM generate_series(CAST(0 AS BIGINT), CAST(:n AS BIGINT) - 1) AS i"
                ),
                {"n": rows},
            )
        else:
            connection.execute(
                text(
                    "WITH RECURSIVE r(i) AS "
                    "(SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < :n - 1)"
                    " INSERT INTO candles SELECT "
                    + values.format(ts=f"{START_MS} + i * 60000", i="i")
                    + " FROM r"
                ),
                {"n": rows},
            )
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("ANALYZE candles"))


def child(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed: {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - began, usage.ru_maxrss / 1024


def bench_export(url: str, rows: int, folder: Path) -> None:
    mds = str(Path(sys.executable).with_name("mds"))
    out = folder / "export.csv"
    command = [mds, "export", "candles", "--symbol", SYMBOL, "--timeframe", "1m"]
    seconds, rss = child([*command, "--db", url, "--output", str(out)])
    lines = sum(1 for _ in out.open()) - 1
    assert lines == rows, (lines, rows)
    size = out.stat().st_size
    peer_out = folder / "peer.csv"
    peer_sql = (
        "SELECT ts_open, open, high, low, close, volume, tick_count FROM candles "
        "WHERE symbol = {p} AND timeframe = '1m' AND ts_open >= {p} AND ts_open < {p} "
        "ORDER BY ts_open"
    )
    peer_seconds, peer_rss = child(
        [sys.executable, "-c", _PEER_EXPORT, url, peer_sql, str(peer_out)]
    )
    print(f"export {rows:,} candle rows to CSV ({size / 2**20:.0f} MiB):")
    print(
        f"  mds export    {seconds:7.1f} s  {rows / seconds:>10,.0f} rows/s  "
        f"peak RSS {rss:6.1f} MiB"
    )
    print(
        f"  driver->csv   {peer_seconds:7.1f} s  {rows / peer_seconds:>10,.0f} rows/s  "
        f"peak RSS {peer_rss:6.1f} MiB"
    )
    print(f"  ratio (mds export / driver->csv time): {seconds / peer_seconds:.2f}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_api(engine: Engine, rows: int, runs: int) -> None:
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (200, {}),
        ready=lambda: (True, {}),
        api=make_api(engine),
    )
    server = HttpServer(app)
    server.start()
    # Pages spread over the whole table, the same ones for both.
    starts = [START_MS + ((i * 7919) % max(rows - PAGE, 1)) * 60_000 for i in range(runs)]
    api_ms: list[float] = []
    driver_ms: list[float] = []
    try:
        for start in starts[:3]:  # warm the caches and the pool
            urllib.request.urlopen(
                f"{server.url}/api/v1/candles?symbol=EUR/USD&timeframe=1m&from={start}&limit={PAGE}"
            ).read()
        for start in starts:
            url = (
                f"{server.url}/api/v1/candles?symbol=EUR/USD&timeframe=1m&from={start}&limit={PAGE}"
            )
            began = time.perf_counter()
            with urllib.request.urlopen(url) as response:
                body = response.read()
            api_ms.append((time.perf_counter() - began) * 1000)
            assert body.count(b'"ts_open"') == PAGE
            began = time.perf_counter()
            with engine.connect() as connection:
                raw = connection.connection.driver_connection
                assert raw is not None
                cursor = raw.cursor()
                placeholder = "%s" if engine.dialect.name == "postgresql" else "?"
                cursor.execute(_SELECT.replace("{p}", placeholder), (SYMBOL, start, PAGE))
                fetched = cursor.fetchall()
                cursor.close()
            driver_ms.append((time.perf_counter() - began) * 1000)
            assert len(fetched) == PAGE
    finally:
        server.stop()
    p50, p99 = statistics.median(api_ms), percentile(api_ms, 0.99)
    d50, d99 = statistics.median(driver_ms), percentile(driver_ms, 0.99)
    print(f"GET /api/v1/candles, {PAGE:,} rows, {runs} runs:")
    print(f"  API over HTTP     p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    print(f"  driver fetchall   p50 {d50:7.1f} ms  p99 {d99:7.1f} ms")
    print(f"  ratio (API / driver): p50 {p50 / d50:.1f}  p99 {p99 / d99:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temp folder)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--only", choices=("api", "export"), help="run one of the two")
    parser.add_argument(
        "--folder", help="keep the SQLite database and files here (reused when it has ROWS)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mds-bench-") as scratch:
        folder = args.folder or scratch
        url = args.db or f"sqlite:///{folder}/bench.sqlite"
        engine = create_engine(url)
        upgrade(engine)
        began = time.perf_counter()
        fill(engine, args.rows)
        backend = engine.dialect.name
        print(f"{backend}: {args.rows:,} candle rows ready in {time.perf_counter() - began:.0f} s")
        if args.only in (None, "api"):
            bench_api(engine, args.rows, args.runs)
        if args.only in (None, "export"):
            bench_export(url, args.rows, Path(folder))
        engine.dispose()


if __name__ == "__main__":
    main()
