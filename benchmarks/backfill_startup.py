"""Whole-process wall time of ``mds backfill --kind candles`` on a small database, where
start-up is most of it (issue 13): this checkout against another source tree (``--before
SRC``, e.g. main's ``src`` from ``git archive``), interleaved, with ``python -c pass``
and ``python -c "import sqlalchemy, numpy"`` as the floors measured in the same minutes.

The database: one day of EUR/USD ticks from tests/data (8,025 ticks, 743 candles),
ingested once; every run backfills a fresh copy of it (the copy is not timed).

Usage: python benchmarks/backfill_startup.py [--runs 11] [--before /path/to/old/src]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests/data/forex_ticks/lean_fxcm/eurusd/20140504_eurusd_tick_quote.csv.gz"


def _mds(src: Path | None, *args: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return [sys.executable, "-m", "market_data_services", *args], env


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(*, runs: int, before: Path | None, workdir: Path) -> dict[str, float]:
    """Median wall seconds of each contender over ``runs`` interleaved rounds."""
    loaded = workdir / "loaded.sqlite"
    ingest, env = _mds(None, "ingest", "ticks", str(SAMPLE), "--symbol", "EUR/USD")
    subprocess.run(
        [*ingest, "--tz", "UTC-05:00", "--no-progress", "--db", f"sqlite:///{loaded}"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    copy = workdir / "copy.sqlite"
    backfill = ("backfill", "--kind", "candles", "--no-progress", "--db", f"sqlite:///{copy}")
    contenders: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], dict(os.environ)),
        "python -c 'import sqlalchemy, numpy'": (
            [sys.executable, "-c", "import sqlalchemy, numpy"],
            dict(os.environ),
        ),
        "mds backfill (this checkout)": _mds(None, *backfill),
    }
    if before is not None:
        contenders["mds backfill (--before)"] = _mds(before, *backfill)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(runs + 1):
        for name, (command, env) in contenders.items():
            shutil.copyfile(loaded, copy)
            seconds = _wall(command, env)
            if round_number:  # the first round warms the file cache
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--before", type=Path, help="another src tree to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mds-backfill-startup-") as folder:
        medians = measure(runs=args.runs, before=args.before, workdir=Path(folder))
    floor = medians["python -c pass"]
    print(f"# backfill_startup.py  python {sys.version.split()[0]}  runs={args.runs} (median wall)")
    print("| command | seconds | / python -c pass |")
    print("| --- | ---: | ---: |")
    for name, seconds in medians.items():
        print(f"| `{name}` | {seconds:.3f} | {seconds / floor:.1f}x |")
    if args.before is not None:
        ratio = medians["mds backfill (this checkout)"] / medians["mds backfill (--before)"]
        print(f"\nthis checkout / before: {ratio:.2f}")


if __name__ == "__main__":
    main()
