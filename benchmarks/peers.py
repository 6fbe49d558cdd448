"""Issue 13's speed targets, every one a ratio against a peer measured in the same run.

Usage: .venv/bin/python benchmarks/peers.py [--workdir DIR] [--rounds N] [--pg URL]
       [--skip-pg] [--skip-dom]        (needs the ``bench`` extra: pip install -e '.[bench]')

Rows, each the median of ``--rounds`` interleaved rounds (ours, then the peer, on fresh
copies of the same database), with the range of the per-round ratios:

1. ``mds backfill --kind candles --workers 2``, whole process, against the bare DuckDB
   script ``benchmarks/duckdb_candles.py`` (which uses both cores by default) on the same
   database: the 3.07 M real LEAN ticks on SQLite; 1 M synthetic ticks, 10 symbols, 7 days,
   SQLite; 0.1 M ticks spread over 1 M symbol-minutes (sparse); the real ticks on
   PostgreSQL (DuckDB's postgres scanner). After each pair the two ``candles`` tables are
   compared in full, row for row, bit for bit. Target: at most 1.0x.
2. In-process ``AggregatorService.backfill()`` on the real ticks against the numpy floor:
   the same seven timeframes reduced with numpy from ticks already in arrays (loading them
   is not timed; nothing is written). Target: at most 3x.
3. Cost per tick, sparse against dense: in-process backfill seconds per tick on the sparse
   set over the same on the dense synthetic set. Target: at most 1.5x.
4. The DOM iteration against the numpy compute of the same metrics (``benchmarks/dom.py``
   with ``--median``, SQLite and PostgreSQL). Target: at most 3x (SQLite), 4x (PostgreSQL).
5. Peak RSS of the whole ``mds backfill`` process on the real ticks (kept: at most 121 MB),
   and one live iteration on 10 M stored ticks against 100 k (``benchmarks/candles.py``'s
   (b), kept: at most 1.2x).

``mds --version`` start-up and the ingest rate belong to ``benchmarks/startup.py`` and
``benchmarks/ingest_peers.py``; they are printed here when those files exist (see
``perfa_rows``).
"""

# Children import only what they measure, so imports sit inside functions.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import candles as candle_bench  # noqa: E402  (benchmarks/candles.py: data and builders)

PYTHON = sys.executable
MDS = str(Path(sys.executable).with_name("mds"))
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/mds_bench_peers"


# -- timing a child process ----------------------------------------------------------------


def timed_process(command: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process.

    The peak comes from ``/usr/bin/time``, a small process: a child forked straight from
    this one would inherit this process's own high-water mark in ``ru_maxrss``."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        started = time.perf_counter()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
        peak_kb = int(rss.read().split()[-1])
    return {"seconds": seconds, "peak_mb": peak_kb / 1024}


def run_child(*args: str) -> dict[str, Any]:
    command = [PYTHON, __file__, "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


# -- children --------------------------------------------------------------------------------


def child_inprocess(url: str) -> dict[str, Any]:
    """``AggregatorService.backfill()`` of every stored symbol, timed in process."""
    from prometheus_client import CollectorRegistry

    from market_data_services import AggregatorService
    from market_data_services.aggregators.candles import all_stored_symbols
    from market_data_services.storage import create_engine

    engine = create_engine(url)
    started = time.perf_counter()
    service = AggregatorService(
        engine, symbols=all_stored_symbols(engine), workers=2, registry=CollectorRegistry()
    )
    report = service.backfill()
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "candles": report.candles_written}


def child_numpy(path: str) -> dict[str, Any]:
    """The numpy floor: ticks already in arrays (read untimed), reduced to 7 timeframes."""
    import numpy as np

    connection = sqlite3.connect(path)
    symbols = [r[0] for r in connection.execute("SELECT DISTINCT symbol FROM ticks")]
    arrays = []
    for symbol in symbols:
        rows = connection.execute(
            "SELECT ts, bid + ask, coalesce(volume, 1.0) FROM ticks WHERE symbol = ? "
            "ORDER BY ts, seq",
            (symbol,),
        )
        table = np.fromiter(rows, dtype=[("ts", "i8"), ("p", "f8"), ("v", "f8")])
        arrays.append((table["ts"].copy(), table["p"] * 0.5, table["v"].copy()))
    connection.close()

    def reduce(starts: Any, columns: tuple[Any, ...]) -> tuple[Any, ...]:
        """(start, open, high, low, close, volume, count) per run of equal ``starts``."""
        o, h, lo, c, v, n = columns
        first = np.flatnonzero(np.concatenate(([True], starts[1:] != starts[:-1])))
        last = np.concatenate((first[1:], [len(starts)])) - 1
        return (
            starts[first],
            o[first],
            np.maximum.reduceat(h, first),
            np.minimum.reduceat(lo, first),
            c[last],
            np.add.reduceat(v, first),
            np.add.reduceat(n, first),
        )

    sizes = (300_000, 900_000, 1_800_000, 3_600_000, 14_400_000, 86_400_000)
    started = time.perf_counter()
    candles = 0
    for ts, price, volume in arrays:
        ones = np.ones(len(ts), dtype=np.int64)
        minute = reduce(ts - ts % 60_000, (price, price, price, price, volume, ones))
        candles += len(minute[0])
        for size in sizes:
            rolled = reduce(minute[0] - minute[0] % size, minute[1:])
            candles += len(rolled[0])
    return {"seconds": time.perf_counter() - started, "candles": candles}


def build_sparse(path: Path) -> None:
    """0.1 M ticks spread over about 1 M symbol-minutes: 10 symbols, 10,000 ticks each
    over 70 days (100,800 minutes each), about one tick per ten minutes."""
    from market_data_services.storage import create_engine, upgrade
    from market_data_services.storage.schema import ticks
    from market_data_services.storage.upsert import insert

    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    for number in range(10):
        rows = candle_bench.synthetic_rows(1, 10_000, 70, seed=100 + number)
        renamed = ((f"SYM{number:03d}", *row[1:]) for row in rows)
        with engine.begin() as connection:
            insert(connection, ticks, renamed, columns=("symbol", "ts", "seq", "bid", "ask"))
    engine.dispose()


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` unless it exists."""
    from sqlalchemy import text

    from market_data_services.storage import create_engine

    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).scalar()
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


def load_postgres(url: str) -> int:
    """The real ticks into the scratch PostgreSQL database (once; reused when complete)."""
    from sqlalchemy import text

    from market_data_services.ingest import ingest_ticks
    from market_data_services.storage import create_engine, upgrade

    ensure_database(url)
    engine = create_engine(url)
    upgrade(engine)
    with engine.connect() as connection:
        count = int(connection.execute(text("SELECT count(*) FROM ticks")).scalar() or 0)
    if count != 3_074_614:
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE ticks")
        for folder, pair, symbol, zone in candle_bench.SERIES:
            folder_path = candle_bench.DATA / "forex_ticks" / folder / pair
            ingest_ticks(engine, folder_path, symbol=symbol, tz=zone)
        with engine.connect() as connection:
            count = int(connection.execute(text("SELECT count(*) FROM ticks")).scalar() or 0)
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE ticks")
    engine.dispose()
    return count


# -- databases: fresh copies and full comparison -------------------------------------------


class Database:
    """One source database; ``fresh()`` gives a URL with the ticks and no candles."""

    def __init__(self, name: str, url: str, workdir: Path) -> None:
        self.name, self.url, self.workdir = name, url, workdir

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def fresh(self, contender: str) -> str:
        if self.is_sqlite:
            source = Path(self.url.removeprefix("sqlite:///"))
            copy = self.workdir / f"{self.name}-{contender}.sqlite"
            candle_bench.fresh_db(copy)
            shutil.copyfile(source, copy)
            return f"sqlite:///{copy}"
        from sqlalchemy import create_engine

        engine = create_engine(self.url)
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE candles")
            connection.exec_driver_sql("DELETE FROM service_progress")
            connection.exec_driver_sql("DELETE FROM settings")
        engine.dispose()
        return self.url

    def candles(self, url: str) -> list[tuple[Any, ...]]:
        sql = "SELECT * FROM candles ORDER BY symbol, timeframe, ts_open"
        if url.startswith("sqlite"):
            connection = sqlite3.connect(url.removeprefix("sqlite:///"))
            rows = connection.execute(sql).fetchall()
            connection.close()
            return rows
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.connect() as connection:
            result = [tuple(r) for r in connection.exec_driver_sql(sql)]
        engine.dispose()
        return result

    def ticks(self) -> int:
        if self.is_sqlite:
            connection = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            count = int(connection.execute("SELECT count(*) FROM ticks").fetchone()[0])
            connection.close()
            return count
        return 3_074_614


def plain_url(url: str) -> str:
    """The URL DuckDB's script takes: no SQLAlchemy driver suffix."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def whole_process_round(db: Database) -> dict[str, Any]:
    """One interleaved round: ``mds backfill`` then the DuckDB script, outputs compared."""
    ours_url = db.fresh("ours")
    ours = timed_process(
        [MDS, "backfill", "--kind", "candles", "--workers", "2", "--no-progress", "--db", ours_url]
    )
    ours_rows = db.candles(ours_url)
    duck_url = db.fresh("duckdb")
    duck = timed_process([PYTHON, str(HERE / "duckdb_candles.py"), plain_url(duck_url)])
    duck_rows = db.candles(duck_url)
    if ours_rows != duck_rows:
        raise AssertionError(
            f"{db.name}: candles differ: ours {len(ours_rows)} rows, DuckDB {len(duck_rows)}"
        )
    return {"ours": ours, "duckdb": duck, "candles": len(ours_rows)}


def in_process_round(db: Database, with_numpy: bool) -> dict[str, Any]:
    result = {"ours": run_child("inprocess", db.fresh("inproc"))}
    if with_numpy:
        result["numpy"] = run_child("numpy", db.url.removeprefix("sqlite:///"))
    return result


# -- the report ------------------------------------------------------------------------------


def ratio_line(label: str, ours: list[float], peers: list[float], target: float) -> str:
    ratios = [a / b for a, b in zip(ours, peers, strict=True)]
    median = statistics.median(ratios)
    verdict = "meets" if median <= target else "MISSES"
    return (
        f"| {label} | {statistics.median(ours):.2f} s | {statistics.median(peers):.2f} s | "
        f"{median:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {target:g}x: {verdict} |"
    )


def dom_ratio(url: str | None, rounds: int) -> tuple[float, float]:
    """(DOM iteration seconds, numpy compute seconds) from ``benchmarks/dom.py --median``."""
    command = [PYTHON, str(HERE / "dom.py"), "--median", "--rounds", str(rounds)]
    if url:
        ensure_database(url)
        command += ["--db", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    seconds: dict[str, float] = {}
    for line in output.splitlines():
        for key in ("DOM iteration (catch_up)", "(a) numpy compute"):
            if line.startswith(key):
                seconds[key] = float(line[len(key) :].split()[0])
    return seconds["DOM iteration (catch_up)"], seconds["(a) numpy compute"]


def perfa_rows(rounds: int, pg: str | None) -> list[str]:
    """``mds --version``/``--help`` start-up and the ingest rate, from
    ``benchmarks/startup.py`` and ``benchmarks/ingest_peers.py`` (written on branch perfa),
    through their ``measure()`` functions; a line saying so when a file is absent."""
    lines: list[str] = []
    if (HERE / "startup.py").exists():
        import startup

        medians = startup.measure(runs=max(rounds, 11))
        for name in ("mds --version", "mds --help"):
            seconds = medians[name]
            verdict = "meets" if seconds <= startup.TARGET_SECONDS else "MISSES"
            lines.append(
                f"| `{name}` wall (startup.py median) | {seconds:.3f} s | "
                f"`python -c pass` {medians['python -c pass']:.3f} s | | "
                f"<= {startup.TARGET_SECONDS} s: {verdict} |"
            )
    else:
        lines.append("(start-up not in this run: benchmarks/startup.py is not present)")
    if (HERE / "ingest_peers.py").exists():
        import ingest_peers

        maintenance = pg.rsplit("/", 1)[0] + "/postgres" if pg else None
        result = ingest_peers.measure(rounds=rounds, pg=maintenance)
        for key, label in (
            ("sqlite/ours_vs_duckdb/rate", "ingest rate / DuckDB's, SQLite"),
            ("postgresql/ours_vs_copy/rate", "ingest rate / plain COPY, PostgreSQL"),
        ):
            if key in result:
                verdict = "meets" if result[key] >= 1.0 else "MISSES"
                ratio = f"{result[key]:.2f}"
                lines.append(f"| {label} (ingest_peers.py) | | | {ratio} | >= 1x: {verdict} |")
    else:
        lines.append("(ingest rate not in this run: benchmarks/ingest_peers.py is not present)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/mds-bench-peers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=DEFAULT_PG, help="scratch PostgreSQL database URL")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-dom", action="store_true")
    parser.add_argument("--skip-live", action="store_true", help="skip the 10 M live iteration")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, target = args.child
        children: dict[str, Callable[[str], dict[str, Any]]] = {
            "inprocess": child_inprocess,
            "numpy": child_numpy,
        }
        print(json.dumps(children[kind](target)))
        return

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = sys.stderr
    real = workdir / "real.sqlite"
    if not real.exists():
        print(f"ingest: {candle_bench.run_child('ingest', str(real))}", file=log)
        candle_bench.checkpoint(real)
    synthetic = workdir / "synthetic.sqlite"
    if not synthetic.exists():
        candle_bench.build_synthetic(synthetic, 10, 100_000, 7, candle_bench.SYNTHETIC_START)
        candle_bench.checkpoint(synthetic)
    sparse = workdir / "sparse.sqlite"
    if not sparse.exists():
        build_sparse(sparse)
        candle_bench.checkpoint(sparse)
    databases = {
        "real": Database("real", f"sqlite:///{real}", workdir),
        "synthetic": Database("synthetic", f"sqlite:///{synthetic}", workdir),
        "sparse": Database("sparse", f"sqlite:///{sparse}", workdir),
    }
    if not args.skip_pg:
        print(f"postgres ticks: {load_postgres(args.pg)}", file=log)
        databases["real-pg"] = Database("real-pg", args.pg, workdir)

    whole: dict[str, list[dict[str, Any]]] = {name: [] for name in databases}
    inproc: dict[str, list[dict[str, Any]]] = {n: [] for n in ("real", "synthetic", "sparse")}
    for number in range(args.rounds):
        for name, db in databases.items():
            whole[name].append(whole_process_round(db))
            print(f"round {number + 1} {name}: {whole[name][-1]}", file=log)
        for name, runs in inproc.items():
            runs.append(in_process_round(databases[name], with_numpy=name == "real"))
            print(f"round {number + 1} {name} in process: {runs[-1]}", file=log)
    # Kept, so a failure below loses no measurement.
    raw = json.dumps({"whole": whole, "inprocess": inproc})
    (workdir / "peers-results.json").write_text(raw)
    live: dict[str, Any] = {}
    if not args.skip_live:
        # benchmarks/candles.py's (b): one live iteration on 10 M stored ticks and on 100 k.
        options = argparse.Namespace(skip_10m=False, repeat=args.rounds)
        live = candle_bench.run_live(workdir, options)
    dom: dict[str, tuple[float, float]] = {}
    if not args.skip_dom:
        dom["SQLite"] = dom_ratio(None, args.rounds)
        if not args.skip_pg:
            dom["PostgreSQL"] = dom_ratio(args.pg.rsplit("/", 1)[0] + "/mds_bench_dom", args.rounds)
    report(args, databases, whole=whole, inproc=inproc, dom=dom, live=live)


def report(
    args: argparse.Namespace,
    databases: dict[str, Database],
    *,
    whole: dict[str, list[dict[str, Any]]],
    inproc: dict[str, list[dict[str, Any]]],
    dom: dict[str, tuple[float, float]],
    live: dict[str, Any],
) -> None:
    import platform

    print(
        f"# peers.py  python {platform.python_version()}  sqlite {sqlite3.sqlite_version}  "
        f"rounds={args.rounds} (median ratio of the rounds, range in brackets)\n"
    )
    labels = {
        "real": "3.07 M real LEAN ticks, SQLite",
        "synthetic": "1 M synthetic ticks, 10 symbols, SQLite",
        "sparse": "0.1 M ticks over 1 M symbol-minutes, SQLite",
        "real-pg": "3.07 M real ticks, PostgreSQL",
    }
    print("| `mds backfill --kind candles`, whole process | ours | DuckDB | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, runs in whole.items():
        ours = [r["ours"]["seconds"] for r in runs]
        duck = [r["duckdb"]["seconds"] for r in runs]
        label = f"{labels[name]} ({runs[0]['candles']:,} candles, equal)"
        print(ratio_line(label, ours, duck, 1.0))
    print()
    print("| in process | ours | peer | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    ours_real = [r["ours"]["seconds"] for r in inproc["real"]]
    floor = [r["numpy"]["seconds"] for r in inproc["real"]]
    print(ratio_line("backfill / numpy floor, real ticks", ours_real, floor, 3.0))
    per_tick = {
        name: [r["ours"]["seconds"] / databases[name].ticks() for r in runs]
        for name, runs in inproc.items()
    }
    print(
        ratio_line(
            "per tick: sparse / dense (1 M synthetic), µs",
            [s * 1e6 for s in per_tick["sparse"]],
            [s * 1e6 for s in per_tick["synthetic"]],
            1.5,
        ).replace(" s |", " µs |")
    )
    # The same ratio for DuckDB's whole process, as a yardstick: a sparse tick makes up to
    # seven candles of its own, a dense one shares them.
    duck_per_tick = {
        name: [r["duckdb"]["seconds"] * 1e6 / databases[name].ticks() for r in whole[name]]
        for name in ("sparse", "synthetic")
    }
    duck_ratio = statistics.median(
        a / b for a, b in zip(duck_per_tick["sparse"], duck_per_tick["synthetic"], strict=True)
    )
    print(f"| (DuckDB's own sparse / dense per tick, whole process) | | | {duck_ratio:.2f} | |")
    for name, (iteration, numpy_s) in dom.items():
        target = 3.0 if name == "SQLite" else 4.0
        ratio = iteration / numpy_s
        verdict = "meets" if ratio <= target else "MISSES"
        print(
            f"| DOM iteration / numpy compute, {name} (dom.py medians) | {iteration:.3f} s | "
            f"{numpy_s:.3f} s | {ratio:.2f} | {target:g}x: {verdict} |"
        )
    if "paired_ratio" in live:
        ratio = live["paired_ratio"]
        verdict = "meets" if ratio <= 1.2 else "MISSES"
        print(
            f"| live iteration, 10 M / 100 k ticks stored (candles.py (b), paired rounds) | "
            f"{live['10000000']['median_s']:.3f} s | {live['100000']['median_s']:.3f} s | "
            f"{ratio:.2f} | 1.2x: {verdict} |"
        )
    peaks = [r["ours"]["peak_mb"] for r in whole["real"]]
    duck_peaks = [r["duckdb"]["peak_mb"] for r in whole["real"]]
    print(
        f"\nPeak RSS, whole process, real ticks on SQLite: ours {max(peaks):.0f} MB "
        f"(max of rounds; kept at most 121 MB), DuckDB {max(duck_peaks):.0f} MB"
    )
    print()
    for line in perfa_rows(args.rounds, None if args.skip_pg else args.pg):
        print(line)


if __name__ == "__main__":
    main()
