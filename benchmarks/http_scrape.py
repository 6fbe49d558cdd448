"""Scrape throughput of ``mds run``'s HTTP server against prometheus_client's own.

Both serve the same registry (the contract metrics of 20 services, iterations observed)
on 127.0.0.1; CLIENTS threads scrape /metrics over keep-alive-less HTTP/1.1 for SECONDS
each. Prints requests per second, median and p99 latency, and our/peer ratios.

    .venv/bin/python benchmarks/http_scrape.py
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from market_data_services.app.server import HttpServer, make_app
from market_data_services.runtime import ThreadedBackgroundService

SERVICES = 20
CLIENTS = 8
SECONDS = 3.0


class Quiet(ThreadedBackgroundService):
    def __init__(self, name: str, **kwargs: Any) -> None:
        self._given_name = name
        super().__init__(None, ["EUR/USD"], 60.0, **kwargs)

    @property
    def service_name(self) -> str:
        return self._given_name

    def _process_iteration(self) -> None:
        return None


#: The services must outlive populated_registry(): a registry drops a collected one's series.
_ALIVE: list[Quiet] = []


def populated_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    for i in range(SERVICES):
        service = Quiet(f"Service{i}", registry=registry)
        _ALIVE.append(service)
        for _ in range(50):
            service.run_once()
    return registry


def hammer(url: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + SECONDS

    def client() -> None:
        mine: list[float] = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - began), latencies


def summary(name: str, rate: float, latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    median = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(f"{name:<28} {rate:8.0f} req/s   median {median:6.2f} ms   p99 {p99:6.2f} ms")
    return rate, median, p99


def main() -> None:
    registry = populated_registry()
    ours = HttpServer(
        make_app(registry=registry, health=lambda: (200, {}), ready=lambda: (True, {})),
        port=0,
        threads=8,
    )
    ours.start()
    peer_server, peer_thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    peer_url = f"http://127.0.0.1:{peer_server.server_port}/metrics"
    try:
        size = len(urllib.request.urlopen(f"{ours.url}/metrics").read())
        print(f"{SERVICES} services, /metrics body {size} bytes, {CLIENTS} clients, {SECONDS}s")
        hammer(f"{ours.url}/metrics")  # warm-up
        a = summary("asyncio+h11 (mds run)", *hammer(f"{ours.url}/metrics"))
        b = summary("prometheus_client wsgiref", *hammer(peer_url))
        print(
            f"ratio ours/peer: throughput {a[0] / b[0]:.2f}, "
            f"median latency {a[1] / b[1]:.2f}, p99 latency {a[2] / b[2]:.2f}"
        )
    finally:
        ours.stop()
        peer_server.shutdown()
        peer_thread.join(5)


if __name__ == "__main__":
    main()
