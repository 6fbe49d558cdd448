"""Hostile HTTP clients against a real ``mds run --demo``: its memory and its answers.

The process is a subprocess so that its resident memory is its own; every client is a
real socket on loopback, bounded in count and time.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_executable
from tests.e2e.mds_process import MdsProcess, wait_until
from tests.slow_clients import SlowClients, send_huge_header, trickle_until_cut

pytestmark = pytest.mark.slow


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def sample(mds: MdsProcess, name: str, labels: dict[str, str] | None = None) -> float:
    status, body = mds.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels or ''} in /metrics")


def address(mds: MdsProcess) -> tuple[str, int]:
    host, port = mds.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@contextmanager
def running_mds(tmp_path: Path, *, header_deadline_seconds: float) -> Iterator[MdsProcess]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to read the server's memory")
    deadline = f"http.header_deadline_seconds={header_deadline_seconds}"
    process = MdsProcess(["--demo", "--set", deadline], cwd=tmp_path)
    try:
        yield process
    finally:
        process.close()


def test_a_100_mb_header_is_refused_without_the_process_growing(tmp_path: Path) -> None:
    with running_mds(tmp_path, header_deadline_seconds=10) as mds:
        assert mds.get("/metrics")[0] == 200  # warm: the first scrape's allocations are done
        before = rss_bytes(mds.proc.pid)
        answer = send_huge_header(address(mds), 100)
        after = rss_bytes(mds.proc.pid)
        labels = {"reason": "header_fields_too_large"}
        refused = sample(mds, "mds_http_connections_refused_total", labels)
        healthz = mds.get("/healthz")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert after - before < 20 * 1024 * 1024, f"RSS grew {(after - before) / 2**20:.1f} MiB"
    assert refused == 1
    assert healthz == (200, "ok\n")


def test_200_slow_clients_leave_metrics_and_healthz_answering(tmp_path: Path) -> None:
    # A long deadline keeps all 200 open however slowly this machine runs the test.
    with (
        running_mds(tmp_path, header_deadline_seconds=120) as mds,
        SlowClients(address(mds), 200, every_seconds=0.5),
    ):
        statuses = [mds.get("/metrics")[0] for _ in range(20)]
        statuses += [mds.get("/healthz")[0] for _ in range(20)]
        held = sample(mds, "mds_http_connections_open")
    assert statuses == [200] * 40
    assert held >= 200


def test_the_configured_header_deadline_cuts_a_trickling_client(tmp_path: Path) -> None:
    # One byte every 0.2 s: 100 bytes would take 20 s; the deadline is 2 s.
    with running_mds(tmp_path, header_deadline_seconds=2) as mds:
        sent, answer = trickle_until_cut(address(mds), every_seconds=0.2, most_bytes=100)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request head not complete within 2 s" in answer
    assert sent < 100


def test_running_out_of_file_descriptors_pauses_accepting_and_recovers(tmp_path: Path) -> None:
    prlimit = require_executable("prlimit", "util-linux")
    with running_mds(tmp_path, header_deadline_seconds=120) as mds:
        pid = mds.proc.pid
        open_now = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        limit = open_now + 10
        subprocess.run([prlimit, f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
        with SlowClients(address(mds), 30, every_seconds=0.5):
            # More connections than descriptors: accept fails; it must not spin.
            wait_until(
                lambda: any(r.get("event") == "http.accept_failed" for r in mds.logs),
                10,
                "accept fails for want of descriptors",
            )
            window = threading.Event()
            window.wait(3.0)  # three seconds of a full table
            failures = sum(r.get("event") == "http.accept_failed" for r in mds.logs)
            assert failures <= 10, f"{failures} accept failures logged in about 3 s"
        # The slow clients are gone: the server accepts again within its pause.
        wait_until(lambda: mds.get("/healthz")[0] == 200, 10, "/healthz answers again")
        assert mds.proc.poll() is None
