"""Peak memory of ``mds ingest ticks`` does not grow with the file: LEAN gzips of good
rows at two sizes, and a decompression bomb of one line, each ingested by a child
process that reports its own peak resident set (``VmHWM``) as it exits. (BENCHMARKS.md
has the 300 MB-expanded figure: benchmarks/ingest_memory.py.)

Not ``ru_maxrss``: Linux carries a process's high-water mark across ``exec``, so a child
forked from a pytest process that has grown to 500 MB reports 500 MB whatever it does.
``VmHWM`` belongs to the address space the child ``exec``'d into.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest

from market_data_services.app.cli import main

pytestmark = pytest.mark.slow

LEAN_NAME = "20140501_eurusd_tick_quote.csv.gz"
#: Far above what one chunk takes, far below a file read whole (a 300 MB text took 3.5 GB).
BOUND_MB = 300


def _lean_rows(rows: int) -> bytes:
    return "".join(
        f"{1000 + i * 37},{1.38 + (i % 97) * 1e-5:.5f},{1.38002 + (i % 97) * 1e-5:.5f}\r\n"
        for i in range(rows)
    ).encode()


def _write_gzip(folder: Path, block: bytes, expanded_mb: float) -> Path:
    folder.mkdir()
    path = folder / LEAN_NAME
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(max(1, int(expanded_mb * 1e6) // len(block))):
            out.write(block)
    return path


#: ``mds`` with its arguments, printing the process's peak RSS in kB as it exits.
_MDS_REPORTING_PEAK = """
import atexit, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"peak-rss-kb {peak}", file=sys.stderr)
atexit.register(report)
from market_data_services.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _peak_rss_mb(path: Path, url: str) -> tuple[float, str]:
    """Peak RSS (MB) and output of ``mds ingest ticks PATH`` in a child process."""
    command = [sys.executable, "-c", _MDS_REPORTING_PEAK, "ingest", "ticks"]
    command += [str(path), "--symbol", "EUR/USD", "--no-progress", "--db", url]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), output
    assert "Traceback" not in output, output
    peak = re.search(r"^peak-rss-kb (\d+)$", done.stderr, re.MULTILINE)
    assert peak is not None, output
    return int(peak.group(1)) / 1024, output


def test_peak_memory_does_not_grow_with_a_lean_file_of_good_rows(tmp_path: Path) -> None:
    block = _lean_rows(1000)
    peaks = []
    for expanded_mb in (8, 24):
        url = f"sqlite:///{tmp_path}/ticks{expanded_mb}.sqlite"
        assert main(["db", "upgrade", "--db", url]) == 0
        path = _write_gzip(tmp_path / f"mb{expanded_mb}", block, expanded_mb)
        peak, output = _peak_rss_mb(path, url)
        rows = int(expanded_mb * 1e6) // len(block) * 1000
        assert f"{rows:,} ticks accepted" in output
        peaks.append(peak)
    # Both hold full chunks (CHUNK_ROWS): 3x the rows is more chunks, not more memory
    # (read whole, the larger file took over 100 MB more).
    assert peaks[1] < BOUND_MB
    assert peaks[1] - peaks[0] < 40, peaks


def test_a_gzip_bomb_of_one_line_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ticks.sqlite"
    assert main(["db", "upgrade", "--db", url]) == 0
    folder = tmp_path / "bomb"
    folder.mkdir()
    path = folder / LEAN_NAME
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b"1000,1.1,1.2\r\n")
        for _ in range(200):  # 200 MB without a line end
            out.write(b"7" * 1_000_000)
    assert path.stat().st_size < 2_000_000
    peak, output = _peak_rss_mb(path, url)
    assert peak < 150, peak  # the process itself is about 90 MB; the line is never held
    assert "1 ticks accepted" in output
    assert "line_too_long 1" in output
