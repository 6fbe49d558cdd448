"""Peak memory of ``mds ingest ticks`` on a LEAN gzip that expands to far more than it
weighs (a decompression bomb made of good rows), against the same command on a small
file of the same rows.

Run: ``.venv/bin/python benchmarks/ingest_memory.py`` (300 MB expanded, SQLite in a
temporary directory), or ``--expanded-mb 30`` for a quick look.

The file is built in a temporary directory: a block of 1,000 distinct LEAN rows
(``ms_since_midnight,bid,ask``) repeated until the text reaches the size asked for, gzip'd,
so a few hundred KB on disk expand to hundreds of MB. Every row is valid: the command
stores them all (repeated times get the next ``seq``). Each ``mds ingest ticks`` runs as
a child process, and its peak resident set (``ru_maxrss`` of ``os.wait4``, that child
only) and wall time are printed, with the ratio to the peer: the same command on a file
of one block (1,000 rows), which is what the process costs with no data to speak of.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK_ROWS = 1000
FILE_NAME = "20140501_eurusd_tick_quote.csv.gz"


def lean_block(rows: int = BLOCK_ROWS) -> bytes:
    """``rows`` distinct LEAN rows, CRLF line ends like the vendor's files."""
    lines = []
    for i in range(rows):
        bid = 1.38000 + (i % 97) * 0.00001
        lines.append(f"{1000 + i * 37},{bid:.5f},{bid + 0.00002:.5f}\r\n")
    return "".join(lines).encode()


def write_bomb(folder: Path, expanded_bytes: int) -> Path:
    """A LEAN gzip in ``folder`` whose text is about ``expanded_bytes`` long."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE_NAME
    block = lean_block()
    with gzip.open(path, "wb", compresslevel=6) as out:
        for _ in range(max(1, expanded_bytes // len(block))):
            out.write(block)
    return path


def ingest(path: Path, db: Path, mds: str) -> tuple[int, float, int, str]:
    """Run ``mds ingest ticks`` on ``path``; (exit code, seconds, peak RSS in KB, stdout)."""
    command = [mds, "ingest", "ticks", "--db", f"sqlite:///{db}", "--symbol", "EUR/USD"]
    command += ["--no-progress", str(path)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert child.stdout is not None
    output = child.stdout.read().decode()
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, seconds, usage.ru_maxrss, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expanded-mb", type=float, default=300.0)
    args = parser.parse_args(argv)
    mds = str(Path(sys.executable).with_name("mds"))
    with tempfile.TemporaryDirectory(prefix="mds-ingest-memory-") as tmp:
        work = Path(tmp)
        small = write_bomb(work / "small", 1)
        big = write_bomb(work / "big", int(args.expanded_mb * 1_000_000))
        expanded = sum(len(c) for c in _chunks(big))
        print(
            f"file: {big.stat().st_size / 1e3:,.0f} KB gzip, {expanded / 1e6:,.0f} MB expanded, "
            f"{expanded // len(lean_block()) * BLOCK_ROWS:,} rows"
        )
        peer = ingest(small, work / "small.sqlite", mds)
        run = ingest(big, work / "big.sqlite", mds)
        for name, (code, seconds, rss_kb, output) in (("peer (1,000 rows)", peer), ("bomb", run)):
            print(f"{name}: exit {code}, {seconds:.1f} s, peak RSS {rss_kb / 1024:.0f} MB")
            print("  " + output.strip().replace("\n", "\n  "))
        print(f"peak RSS ratio bomb/peer: {run[2] / peer[2]:.2f}")
        return 0 if run[0] == 0 else 1


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(size):
            yield chunk


if __name__ == "__main__":
    sys.exit(main())
