"""``/metrics`` latency of ``mds run --demo`` with 200 slow clients open, and its memory
after a 100 MB header.

Starts ``mds run --demo`` (default ``[http]`` settings) on a free loopback port, then
scrapes ``/metrics`` REQUESTS times one after another with no other client (the peer),
and again while SLOW connections each send one header byte per second and never finish
(reopened when the server cuts them at its header deadline). Prints p50/p99 of both and
their ratio, then the server's RSS before and after one request with a 100 MB header.

    .venv/bin/python benchmarks/http_slowloris.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.slow_clients

from tests.slow_clients import SlowClients, send_huge_header

REQUESTS = 2000
SLOW = 200


def start_mds(workdir: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "market_data_services", "run", "--demo"]
    command += ["--listen", "127.0.0.1:0", "--log-format", "json"]
    proc = subprocess.Popen(command, cwd=workdir, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "mds.running":
            return proc, str(record["url"])
    raise SystemExit(f"mds run ended (exit {proc.wait()}) before it was running")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS")


def scrape_latencies(url: str) -> list[float]:
    latencies = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            response.read()
        latencies.append(time.perf_counter() - started)
    return latencies


def summary(label: str, latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = statistics.median(latencies), cuts[98]
    print(f"{label:34} p50 {p50 * 1000:8.2f} ms   p99 {p99 * 1000:8.2f} ms")
    return p50, p99


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_mds(workdir)
        try:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            address = (host, int(port))
            scrape_latencies(url)[:10]  # warm up
            print(f"/metrics, {REQUESTS} requests one after another, mds run --demo")
            quiet = summary("no other client", scrape_latencies(url))
            with SlowClients(address, SLOW, every_seconds=1.0) as slow:
                loaded = summary(f"{SLOW} slow connections open", scrape_latencies(url))
            print(
                f"{'ratio (slow / none)':34} p50 {loaded[0] / quiet[0]:8.2f}x    "
                f"p99 {loaded[1] / quiet[1]:8.2f}x"
            )
            print(f"slow connections cut at the deadline and reopened: {slow.reopened}")
            before = rss_mib(proc.pid)
            answer = send_huge_header(address, 100)
            after = rss_mib(proc.pid)
            status = answer.split(b"\r\n", 1)[0].decode() or "(closed before an answer)"
            print(
                f"100 MB header: {status}; RSS {before:.1f} MiB -> {after:.1f} MiB "
                f"({after - before:+.1f} MiB)"
            )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
