"""Start-up time of ``mds --version`` and ``mds --help`` (issue 13: at most 0.15 s wall).

Each command runs ``--runs`` times, interleaved with a bare ``python -c pass`` (the
floor: the interpreter alone) and ``python -c "import sqlalchemy, numpy"`` (what the
command used to import before it printed anything), and the median wall time of each
is printed, with the ratio to the bare interpreter.

Usage: python benchmarks/startup.py [--runs 21]
From Python: ``measure(runs=21) -> dict`` returns the medians in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

MDS = str(Path(sys.executable).with_name("mds"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mds --version": [MDS, "--version"],
    "mds --help": [MDS, "--help"],
    "python -c 'import sqlalchemy, numpy'": [sys.executable, "-c", "import sqlalchemy, numpy"],
}
TARGET_SECONDS = 0.15


def wall_seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(*, runs: int = 21) -> dict[str, float]:
    """Median wall seconds per command over ``runs`` interleaved runs."""
    for command in COMMANDS.values():  # warm the file cache once
        wall_seconds(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            times[name].append(wall_seconds(command))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    medians = measure(runs=args.runs)
    floor = medians["python -c pass"]
    print(f"# startup.py  python {sys.version.split()[0]}  runs={args.runs} (median wall)")
    print("| command | seconds | / python -c pass | target |")
    print("| --- | ---: | ---: | --- |")
    for name, seconds in medians.items():
        target = ""
        if name.startswith("mds"):
            verdict = "meets" if seconds <= TARGET_SECONDS else "MISSES"
            target = f"<= {TARGET_SECONDS} s: {verdict}"
        print(f"| `{name}` | {seconds:.3f} | {seconds / floor:.1f}x | {target} |")


if __name__ == "__main__":
    main()
