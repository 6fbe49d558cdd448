"""Hostile HTTP clients against a real ``mds run --demo``: its memory and its answers.

The process is a subprocess so that its resident memory is its own; every client is a
real socket on loopback, bounded in count and time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.mds_process import MdsProcess
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


@pytest.fixture
def mds(tmp_path: Path) -> Iterator[MdsProcess]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to read the server's memory")
    process = MdsProcess(["--demo", "--set", "http.header_deadline_seconds=2"], cwd=tmp_path)
    try:
        yield process
    finally:
        process.close()


def test_a_100_mb_header_is_refused_without_the_process_growing(mds: MdsProcess) -> None:
    assert mds.get("/metrics")[0] == 200  # warm: the first scrape's allocations are done
    before = rss_bytes(mds.proc.pid)
    answer = send_huge_header(address(mds), 100)
    after = rss_bytes(mds.proc.pid)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert after - before < 20 * 1024 * 1024, f"RSS grew {(after - before) / 2**20:.1f} MiB"
    labels = {"reason": "header_fields_too_large"}
    assert sample(mds, "mds_http_connections_refused_total", labels) == 1
    assert mds.get("/healthz") == (200, "ok\n")


def test_200_slow_clients_leave_metrics_and_healthz_answering(mds: MdsProcess) -> None:
    with SlowClients(address(mds), 200, every_seconds=0.5):
        statuses = [mds.get("/metrics")[0] for _ in range(20)]
        statuses += [mds.get("/healthz")[0] for _ in range(20)]
        held = sample(mds, "mds_http_connections_open")
    assert statuses == [200] * 40
    assert held >= 200


def test_the_configured_header_deadline_cuts_a_trickling_client(mds: MdsProcess) -> None:
    # http.header_deadline_seconds=2 (set above); one byte every 0.2 s, 100 bytes = 20 s.
    sent, answer = trickle_until_cut(address(mds), every_seconds=0.2, most_bytes=100)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request head not complete within 2 s" in answer
    assert sent < 100
