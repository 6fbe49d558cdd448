"""Paired rounds of ``ingest_peers.py``'s "ours" child (every real LEAN tick into an empty
PostgreSQL ``ticks``): this checkout against another source tree (``--before SRC``, e.g.
main's ``src`` from ``git archive``), alternating which goes first, each on a fresh
database. On a shared machine the pairs say more about a change than two separate runs.

Usage: MDS_SHARED_DATA=... python benchmarks/ingest_ab.py --before SRC [--rounds 3]
       [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_peers  # the sibling script (after the path insert)


def _seconds(maintenance_url: str, src: Path | None) -> tuple[float, int]:
    name = "ab_before" if src is not None else "ab_after"
    url = ingest_peers._fresh_postgres(maintenance_url, name)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    result = subprocess.run(
        [sys.executable, ingest_peers.__file__, "--child", "ours", url],
        capture_output=True,
        check=True,
        env=env,
        text=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return float(figures["seconds"]), int(figures["rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "this checkout": []}
    for round_number in range(args.rounds):
        order = ["before", "this checkout"]
        for name in order if round_number % 2 == 0 else reversed(order):
            seconds, rows = _seconds(args.pg, args.before if name == "before" else None)
            times[name].append(seconds)
            print(f"  round {round_number + 1} {name:14} {rows / seconds / 1000:.0f} k ticks/s")
    ratios = [a / b for a, b in zip(times["this checkout"], times["before"], strict=True)]
    print(f"# ingest_ab.py  python {sys.version.split()[0]}  rounds={args.rounds}")
    for name, values in times.items():
        rounded = [round(v, 2) for v in values]
        print(f"{name}: median {statistics.median(values):.2f} s, rounds {rounded}")
    print(
        f"this checkout / before, load time per pair: {[round(r, 2) for r in ratios]}, "
        f"median {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
