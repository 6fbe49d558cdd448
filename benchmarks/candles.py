"""Candle benchmarks, each contender in its own process, figures printed as Markdown.

(a) Backfill into all seven timeframes on SQLite, beside the pandas pipeline a user
    would otherwise write on the same database (read_sql, resample().ohlc() per
    timeframe, to_sql), both starting from copies of one database: all the real ticks
    in ../shared/data (about 3.07 million, 4 series) and 1,000,000 synthetic ticks
    (10 symbols, 7 days). Also ingest throughput from the gzip files.
(b) One live iteration with 100 symbols and 60,000 new ticks, with 100 thousand and
    with 10 million ticks already stored.
(c) Peak memory (RSS) of each contender of (a).

Usage: python benchmarks/candles.py [--workdir DIR] [--repeat N] [--skip-10m]
The databases are built once under --workdir (default /tmp/mds-bench) and reused.
"""

# Each child process imports only what its contender needs (pandas is not loaded into
# our process, nor our package into the pandas one), so imports sit inside functions.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MDS_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
SERIES = [
    ("lean_fxcm", "eurusd", "FXCM:EUR/USD", "UTC-05:00"),
    ("lean_fxcm", "nzdusd", "FXCM:NZD/USD", "UTC-05:00"),
    ("lean_oanda", "eurusd", "OANDA:EUR/USD", "UTC"),
    ("lean_oanda", "nzdusd", "OANDA:NZD/USD", "UTC"),
]
RULES = {
    "1m": "1min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "1h": "1h",
    "4h": "4h",
    "1d": "1D",
}
DAY_MS = 86_400_000
SYNTHETIC_START = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- children: each measured step runs in a fresh process -------------------------------------


def child_ingest(db: str) -> dict[str, Any]:
    from market_data_services.ingest import ingest_ticks
    from market_data_services.storage import create_engine, upgrade

    engine = create_engine(f"sqlite:///{db}")
    upgrade(engine)
    total, started = 0, time.perf_counter()
    for folder, pair, symbol, zone in SERIES:
        report = ingest_ticks(engine, DATA / "forex_ticks" / folder / pair, symbol=symbol, tz=zone)
        total += report.written
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"ticks": total, "seconds": seconds}


def child_ours(db: str) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from market_data_services import AggregatorService
    from market_data_services.aggregators.candles import all_stored_symbols
    from market_data_services.storage import create_engine

    engine = create_engine(f"sqlite:///{db}")
    baseline = current_rss_mb()
    started = time.perf_counter()
    service = AggregatorService(
        engine,
        symbols=all_stored_symbols(engine),
        workers=2,
        registry=CollectorRegistry(),
    )
    report = service.backfill()
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": seconds,
        "candles": report.candles_written,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
    }


def child_pandas(db: str) -> dict[str, Any]:
    import pandas as pd

    baseline = current_rss_mb()
    started = time.perf_counter()
    connection = sqlite3.connect(db)
    symbols = [r[0] for r in connection.execute("SELECT DISTINCT symbol FROM ticks")]
    written = 0
    for symbol in symbols:
        ticks = pd.read_sql(
            "SELECT ts, bid, ask, volume FROM ticks WHERE symbol = ? ORDER BY ts, seq",
            connection,
            params=(symbol,),
        )
        index = pd.to_datetime(ticks.ts, unit="ms", utc=True)
        price = ((ticks.bid + ticks.ask) / 2).set_axis(index)
        volume = ticks.volume.fillna(1.0).set_axis(index)
        del ticks
        for timeframe, rule in RULES.items():
            resampled = price.resample(rule)
            frame = resampled.ohlc()
            frame["volume"] = volume.resample(rule).sum()
            frame["tick_count"] = resampled.count()
            frame = frame[frame.tick_count > 0]
            frame.insert(0, "ts_open", frame.index.as_unit("ms").asi8)
            frame.insert(0, "timeframe", timeframe)
            frame.insert(0, "symbol", symbol)
            frame.to_sql("candles", connection, if_exists="append", index=False)
            written += len(frame)
    connection.commit()
    connection.close()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "candles": written,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
    }


def child_live(databases: list[str], repeat: int) -> dict[str, Any]:
    """``repeat`` rounds; in each, 60,000 new ticks for 100 symbols go into every database
    and one iteration runs on each, one after the other, so every history size is timed
    under the same machine load (other work on the machine shifts all of them alike)."""
    from prometheus_client import CollectorRegistry

    from market_data_services import AggregatorService
    from market_data_services.storage import create_engine
    from market_data_services.storage.schema import ticks
    from market_data_services.storage.upsert import insert

    symbols = [f"SYM{i:03d}" for i in range(100)]
    clock = {"now": 0.0}
    setups = []
    for db in databases:
        engine = create_engine(f"sqlite:///{db}")
        with engine.connect() as connection:
            last = connection.exec_driver_sql("SELECT max(ts) FROM ticks").scalar()
        service = AggregatorService(
            engine, symbols=symbols, wall_clock=lambda: clock["now"], registry=CollectorRegistry()
        )
        setups.append((engine, service, (int(last) // 60_000 + 1) * 60_000))
    rng = np.random.default_rng(7)
    timings: list[list[float]] = [[] for _ in databases]
    for round_number in range(repeat):
        rows = []
        for symbol in symbols:
            offsets = np.sort(rng.integers(0, 60_000, 600))
            prices = 1.1 + np.cumsum(rng.normal(0, 1e-5, 600))
            rows.extend(
                (symbol, int(o), 0, float(p), float(p) + 0.0001)
                for o, p in zip(offsets, prices, strict=True)
            )
        for index, (engine, service, first_minute) in enumerate(setups):
            minute = first_minute + round_number * 60_000
            # Equal times in one symbol's minute are possible: number them.
            batch = _numbered([(s, minute + o, q, b, a) for s, o, q, b, a in rows])
            with engine.begin() as connection:
                insert(connection, ticks, batch, columns=("symbol", "ts", "seq", "bid", "ask"))
            clock["now"] = (minute + 60_000 + 2_500) / 1000
            started = time.perf_counter()
            outcome = service.run_once()
            timings[index].append(time.perf_counter() - started)
            assert outcome.value == "succeeded", service.get_metrics()["recent_errors"]
    for engine, _, _ in setups:
        engine.dispose()
    return {"seconds": timings}


def _numbered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    seen: dict[tuple[str, int], int] = {}
    result = []
    for symbol, ts, _, bid, ask in rows:
        seq = seen[(symbol, ts)] = seen.get((symbol, ts), -1) + 1
        result.append((symbol, ts, seq, bid, ask))
    return result


# -- building the databases ----------------------------------------------------------------------


def synthetic_rows(
    symbols: int, per_symbol: int, days: int, seed: int, start: int = SYNTHETIC_START
) -> Any:
    """Random-walk quotes, times spread evenly (with jitter) over ``days``."""
    rng = np.random.default_rng(seed)
    span = days * DAY_MS
    for number in range(symbols):
        offsets = np.sort(rng.integers(0, span, per_symbol))
        ts = start + offsets
        bid = np.round(1.0 + np.cumsum(rng.normal(0, 2e-5, per_symbol)) + number, 5)
        ask = np.round(bid + rng.integers(0, 3, per_symbol) * 1e-5, 5)
        seq = np.zeros(per_symbol, dtype=np.int64)
        repeated = np.flatnonzero(ts[1:] == ts[:-1]) + 1
        for index in repeated.tolist():
            seq[index] = seq[index - 1] + 1
        yield from zip(
            [f"SYM{number:03d}"] * per_symbol,
            ts.tolist(),
            seq.tolist(),
            bid.tolist(),
            ask.tolist(),
            strict=True,
        )


def build_synthetic(path: Path, symbols: int, per_symbol: int, days: int, start: int) -> None:
    from market_data_services.storage import create_engine, upgrade
    from market_data_services.storage.schema import ticks
    from market_data_services.storage.upsert import insert

    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    columns = ("symbol", "ts", "seq", "bid", "ask")
    # One symbol at a time, in time order: the ids follow arrival like a live feed.
    for number in range(symbols):
        rows = synthetic_rows(1, per_symbol, days, seed=number, start=start)
        renamed = ((f"SYM{number:03d}", *row[1:]) for row in rows)
        with engine.begin() as connection:
            insert(connection, ticks, renamed, columns=columns)
    engine.dispose()


def prepare_live(path: Path, stored: int) -> None:
    """100 symbols with ``stored`` ticks over the 7 days before the live minute, all
    their candles built and the watermark at the newest tick, as after a long live run."""
    from prometheus_client import CollectorRegistry

    from market_data_services import AggregatorService
    from market_data_services.storage import create_engine

    build_synthetic(path, 100, stored // 100, 7, SYNTHETIC_START)
    engine = create_engine(f"sqlite:///{path}")
    symbols = [f"SYM{i:03d}" for i in range(100)]
    end = SYNTHETIC_START + 7 * DAY_MS
    clock = end / 1000
    service = AggregatorService(
        engine, symbols=symbols, wall_clock=lambda: clock, registry=CollectorRegistry()
    )
    assert service.run_once().value == "succeeded"
    engine.dispose()


# -- the parent -----------------------------------------------------------------------------------


def run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def compare_backfill(name: str, source: Path, workdir: Path, repeat: int) -> dict[str, Any]:
    """Interleave ours and pandas on fresh copies of ``source``; keep every run."""
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "pandas": []}
    for _ in range(repeat):
        for contender in ("ours", "pandas"):
            copy = workdir / f"{name}-{contender}.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(source, copy)
            runs[contender].append(run_child(contender, str(copy)))
            print(f"  {name} {contender}: {runs[contender][-1]}", file=sys.stderr)
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    ours = statistics.median(r["seconds"] for r in runs["ours"])
    theirs = statistics.median(r["seconds"] for r in runs["pandas"])
    return {
        "ours_s": ours,
        "pandas_s": theirs,
        "ratio": ours / theirs,
        "ours_peak_mb": max(r["peak_mb"] for r in runs["ours"]),
        "pandas_peak_mb": max(r["peak_mb"] for r in runs["pandas"]),
        "ours_work_mb": max(r["peak_mb"] - r["baseline_mb"] for r in runs["ours"]),
        "pandas_work_mb": max(r["peak_mb"] - r["baseline_mb"] for r in runs["pandas"]),
        "ours_candles": runs["ours"][0]["candles"],
        "pandas_candles": runs["pandas"][0]["candles"],
    }


def fresh_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so a plain copy holds everything."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/mds-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-10m", action="store_true", help="skip the 10 M tick history")
    parser.add_argument(
        "--only", choices=("backfill", "live"), help="run one part (the other is skipped)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "ingest":
            answer = child_ingest(rest[0])
        elif kind == "ours":
            answer = child_ours(rest[0])
        elif kind == "pandas":
            answer = child_pandas(rest[0])
        elif kind == "live":
            answer = child_live(rest[:-1], int(rest[-1]))
        elif kind == "build-live":
            prepare_live(Path(rest[0]), int(rest[1]))
            answer = {}
        elif kind == "build-synthetic":
            build_synthetic(Path(rest[0]), 10, 100_000, 7, SYNTHETIC_START)
            answer = {}
        else:
            raise SystemExit(f"unknown child {kind}")
        print(json.dumps(answer))
        return

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    if args.only != "live":
        real = workdir / "real.sqlite"
        fresh_db(real)
        ingest = run_child("ingest", str(real))
        checkpoint(real)
        results["ingest"] = ingest
        print(f"ingest: {ingest}", file=sys.stderr)

        synthetic = workdir / "synthetic.sqlite"
        if not synthetic.exists():
            run_child("build-synthetic", str(synthetic))
            checkpoint(synthetic)

        results["real"] = summarise(compare_backfill("real", real, workdir, args.repeat))
        results["synthetic"] = summarise(
            compare_backfill("synthetic", synthetic, workdir, args.repeat)
        )
    if args.only != "backfill":
        results["live"] = run_live(workdir, args)

    print(json.dumps(results, indent=2), file=sys.stderr)
    report(results, args)


def run_live(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    live: dict[str, Any] = {}
    sizes = [100_000] if args.skip_10m else [100_000, 10_000_000]
    copies = []
    for stored in sizes:
        path = workdir / f"live-{stored}.sqlite"
        if not path.exists():
            run_child("build-live", str(path), str(stored))
            checkpoint(path)
        copy = workdir / f"live-{stored}-run.sqlite"
        fresh_db(copy)
        shutil.copyfile(path, copy)
        copies.append(str(copy))
    rounds = max(args.repeat, 7)
    timings = run_child("live", *copies, str(rounds))["seconds"]
    for stored, runs in zip(sizes, timings, strict=True):
        # The first round reads the copied file from disk into the page cache: reported,
        # left out of the median.
        live[str(stored)] = {"median_s": statistics.median(runs[1:]), "runs_s": runs}
        print(f"live {stored}: {live[str(stored)]}", file=sys.stderr)
    if len(timings) == 2:
        live["paired_ratio"] = statistics.median(
            large / small for small, large in zip(timings[0][1:], timings[1][1:], strict=True)
        )
    return live


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    if "ingest" in results:
        report_backfill(results, args)
    if "live" in results:
        report_live(results)


def report_backfill(results: dict[str, Any], args: argparse.Namespace) -> None:
    ingest = results["ingest"]
    print(
        f"Ingest: {ingest['ticks']:,} ticks from the gzip files into SQLite in "
        f"{ingest['seconds']:.1f} s = {ingest['ticks'] / ingest['seconds']:,.0f} ticks/s\n"
    )
    print("| (a) backfill, 7 timeframes, SQLite | ours | pandas pipeline | ours / pandas |")
    print("| --- | ---: | ---: | ---: |")
    for name, label in (
        ("real", "3.07 M real ticks, 4 series"),
        ("synthetic", "1 M synthetic ticks, 10 symbols, 7 days"),
    ):
        r = results[name]
        print(
            f"| {label}: time (median of {args.repeat}) | {r['ours_s']:.2f} s | "
            f"{r['pandas_s']:.2f} s | {r['ratio']:.2f} |"
        )
        print(
            f"| {label}: (c) peak RSS | {r['ours_peak_mb']:.0f} MB | "
            f"{r['pandas_peak_mb']:.0f} MB | {r['ours_peak_mb'] / r['pandas_peak_mb']:.2f} |"
        )
        print(
            f"| {label}: (c) peak RSS above the imports | {r['ours_work_mb']:.0f} MB | "
            f"{r['pandas_work_mb']:.0f} MB | {r['ours_work_mb'] / r['pandas_work_mb']:.2f} |"
        )
        print(f"| {label}: candles written | {r['ours_candles']:,} | {r['pandas_candles']:,} | |")
    print()


def report_live(results: dict[str, Any]) -> None:
    print("| (b) one live iteration, 100 symbols, 60,000 new ticks | median | runs |")
    print("| --- | ---: | --- |")
    for stored, r in results["live"].items():
        if stored == "paired_ratio":
            continue
        runs = ", ".join(f"{s:.3f}" for s in r["runs_s"])
        print(f"| {int(stored):,} ticks stored | {r['median_s']:.3f} s | {runs} |")
    if "paired_ratio" in results["live"]:
        ratio = results["live"]["paired_ratio"]
        print(f"\n10 M / 100 k iteration time, median of the paired rounds: {ratio:.2f}")


if __name__ == "__main__":
    main()
