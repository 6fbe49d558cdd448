"""In-process candle backfill with one and with two workers, on the databases
``benchmarks/peers.py`` leaves in its workdir (real.sqlite, synthetic.sqlite,
sparse.sqlite: run peers.py once first), optionally against another source tree.

Each run is a child process on a fresh copy of the database, timing
``AggregatorService.backfill()`` of every stored symbol with the engine already open
(start-up excluded); contenders are interleaved, and the median of ``--rounds`` printed.

Usage: python benchmarks/backfill_workers.py [--workdir /tmp/mds-bench-peers]
       [--rounds 3] [--before SRC]   (SRC: another checkout's ``src``, e.g. from
       ``git archive 4d71ede src``; its runs use PYTHONPATH=SRC)
"""

# The child imports the package it measures, so imports sit inside functions.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETS = ("real", "synthetic", "sparse")


def child(path: str, workers: int) -> None:
    from prometheus_client import CollectorRegistry

    from market_data_services import AggregatorService
    from market_data_services.aggregators.candles import all_stored_symbols
    from market_data_services.storage import create_engine

    engine = create_engine(f"sqlite:///{path}")
    service = AggregatorService(
        engine, symbols=all_stored_symbols(engine), workers=workers, registry=CollectorRegistry()
    )
    started = time.perf_counter()
    service.backfill()
    print(json.dumps({"seconds": time.perf_counter() - started}))
    engine.dispose()


def run(source: Path, scratch: Path, workers: int, src: str | None) -> float:
    copy = scratch / "copy.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, copy)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(copy), str(workers)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    seconds: float = json.loads(out.splitlines()[-1])["seconds"]
    return seconds


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/mds-bench-peers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="another checkout's src, run beside this one")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    sources = {"this checkout": None} | ({"before": args.before} if args.before else {})
    print(f"# backfill_workers.py  rounds={args.rounds} (median seconds, in process)")
    print("| set | code | 1 worker | 2 workers | 2 / 1 |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as scratch:
        for name in SETS:
            database = workdir / f"{name}.sqlite"
            if not database.exists():
                print(f"| {name} | (no {database}: run benchmarks/peers.py first) | | | |")
                continue
            times: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.rounds):
                for label, src in sources.items():
                    for workers in (1, 2):
                        seconds = run(database, Path(scratch), workers, src)
                        times.setdefault((label, workers), []).append(seconds)
            for label in sources:
                one = statistics.median(times[(label, 1)])
                two = statistics.median(times[(label, 2)])
                print(f"| {name} | {label} | {one:.3f} | {two:.3f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
