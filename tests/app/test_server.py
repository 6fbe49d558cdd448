"""The HTTP server in-process: the real server on a free port, real services, real clients."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from market_data_services.app.auth import BasicAuth, FailureLimiter, hash_password
from market_data_services.app.health import HealthRule, health_report
from market_data_services.app.server import (
    HEALTH_PATH,
    HttpLimits,
    HttpServer,
    TlsFiles,
    make_app,
)
from market_data_services.runtime import CircuitBreaker, ThreadedBackgroundService
from tests.conftest import require_executable
from tests.slow_clients import SlowClients, send_huge_header, trickle_until_cut


class ToyService(ThreadedBackgroundService):
    """Fails while ``failing`` is set, like a service whose database is locked."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(None, ["EUR/USD"], **kwargs)
        self.failing = threading.Event()

    @property
    def service_name(self) -> str:
        return "ToyService"

    def _process_iteration(self) -> None:
        if self.failing.is_set():
            raise RuntimeError("database is locked")


def get(
    url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def toy(registry: CollectorRegistry) -> Iterator[ToyService]:
    service = ToyService(
        interval_seconds=0.02,
        registry=registry,
        circuit_breaker=CircuitBreaker(failure_threshold=2, timeout=0.2, name="ToyService"),
    )
    yield service
    service.stop(2.0)


def serve(
    registry: CollectorRegistry,
    services: list[ThreadedBackgroundService],
    *,
    auth: BasicAuth | None = None,
    tls: TlsFiles | None = None,
    rule: HealthRule | None = None,
    limits: HttpLimits | None = None,
) -> HttpServer:
    rule = rule or HealthRule(error_rate_window_seconds=0.5)
    app = make_app(
        registry=registry,
        health=lambda: health_report(services, rule),
        ready=lambda: (all(s.is_running() for s in services), {}),
        auth=auth,
    )
    server = HttpServer(
        app, host="127.0.0.1", port=0, threads=4, tls=tls, limits=limits, registry=registry
    )
    server.start()
    return server


@pytest.fixture
def server(registry: CollectorRegistry, toy: ToyService) -> Iterator[HttpServer]:
    http = serve(registry, [toy])
    yield http
    http.stop()


def test_metrics_are_prometheus_text_and_openmetrics_when_asked(
    server: HttpServer, toy: ToyService
) -> None:
    toy.start()
    wait_for(lambda: toy.get_metrics()["iteration_count"] > 0)
    status, headers, body = get(f"{server.url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"mds_service_iterations", "mds_service_circuit_breaker_state"} <= names

    status, headers, body = get(
        f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_om(body.decode())}
    iterations = families["mds_service_iterations"]
    assert next(s.value for s in iterations.samples if s.name.endswith("_total")) > 0


def test_metrics_are_gzipped_for_a_scraper_that_accepts_it(server: HttpServer) -> None:
    status, headers, body = get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("Content-Encoding") == "gzip"
    assert body[:2] == b"\x1f\x8b"


def test_health_turns_503_when_the_breaker_opens_and_200_after_recovery(
    server: HttpServer, toy: ToyService
) -> None:
    toy.start()
    wait_for(lambda: get(server.url + HEALTH_PATH)[0] == 200)
    status, _, body = get(server.url + HEALTH_PATH)
    report = json.loads(body)
    assert report["overall_status"] == "healthy"
    entry = report["services"]["ToyService"]
    assert entry["status"] == "healthy"
    assert entry["circuit_breaker"] == "closed"
    assert entry["error_rate"] == "0.00%"

    toy.failing.set()
    wait_for(
        lambda: (
            json.loads(get(server.url + HEALTH_PATH)[2])["services"]["ToyService"][
                "circuit_breaker"
            ]
            == "open"
        )
    )
    status, _, body = get(server.url + HEALTH_PATH)
    assert status == 503
    degraded = json.loads(body)
    assert degraded["overall_status"] == "degraded"
    entry = degraded["services"]["ToyService"]
    assert entry["status"] == "degraded"
    assert "circuit breaker open" in entry["reasons"]
    assert entry["last_error"]["type"] == "RuntimeError"

    toy.failing.clear()
    wait_for(lambda: get(server.url + HEALTH_PATH)[0] == 200)
    recovered = json.loads(get(server.url + HEALTH_PATH)[2])["services"]["ToyService"]
    assert recovered["circuit_breaker"] == "closed"
    assert recovered["errors"] >= 2  # the lifetime count keeps the incident
    assert recovered["reasons"] == []


def test_a_stopped_service_is_degraded(
    registry: CollectorRegistry, toy: ToyService, server: HttpServer
) -> None:
    status, _, body = get(server.url + HEALTH_PATH)
    assert status == 503
    assert json.loads(body)["services"]["ToyService"]["reasons"] == ["not running"]


def test_unknown_paths_are_404_and_other_methods_405(server: HttpServer) -> None:
    assert get(f"{server.url}/nope")[0] == 404
    assert get(f"{server.url}/metrics/extra")[0] == 404
    request = urllib.request.Request(f"{server.url}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(request, timeout=5)
    assert post.value.code == 405
    assert post.value.headers["Allow"] == "GET, HEAD"


def raw_request(
    url: str, method: str, path: str, headers: str = ""
) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers (without Date) and every byte after them, off the wire."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    fields.pop("Date", None)
    return status, fields, body


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/metrics", ""),
        ("/metrics", "Accept-Encoding: gzip\r\n"),
        ("/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n"),
        ("/healthz", ""),
        ("/readyz", ""),
        (HEALTH_PATH, ""),
        ("/", ""),
        ("/nope", ""),
    ],
)
def test_head_answers_like_get_without_the_body(
    server: HttpServer, path: str, headers: str
) -> None:
    get_status, get_headers, get_body = raw_request(server.url, "GET", path, headers)
    head_status, head_headers, head_body = raw_request(server.url, "HEAD", path, headers)
    assert (head_status, head_headers) == (get_status, get_headers)
    assert head_body == b""
    assert int(get_headers["Content-Length"]) == len(get_body) > 0


def test_healthz_answers_and_readyz_follows_the_services(
    server: HttpServer, toy: ToyService
) -> None:
    assert get(f"{server.url}/healthz")[:3:2] == (200, b"ok\n")
    assert get(f"{server.url}/readyz")[0] == 503
    toy.start()
    status, _, body = get(f"{server.url}/readyz")
    assert status == 200
    assert json.loads(body)["ready"] is True


def test_concurrent_scrapes_all_succeed(server: HttpServer, toy: ToyService) -> None:
    toy.start()

    def scrape(_: int) -> int:
        return get(f"{server.url}/metrics")[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(scrape, range(64)))
    assert statuses == [200] * 64


def test_malformed_requests_do_not_hurt_the_server(server: HttpServer) -> None:
    host, port = server.address
    garbage = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET " + b"/a" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 100_000 + b"\r\n\r\n",
        b"GET /metrics",  # then hang up half-way
    ]
    for payload in garbage:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(65536)
    assert get(f"{server.url}/metrics")[0] == 200
    assert get(f"{server.url}/healthz")[0] == 200


def sample(server: HttpServer, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from a scrape of the server's own /metrics."""
    body = get(f"{server.url}/metrics")[2].decode()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels or ''} in /metrics")


def status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


def test_200_slow_clients_do_not_block_metrics_or_healthz(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    # 4 worker threads: with a thread per connection, 4 slow clients would starve it. A
    # long deadline keeps all 200 open however slowly this machine runs the test.
    server = serve(registry, [toy], limits=HttpLimits(header_deadline_seconds=120))
    try:
        with SlowClients(server.address, 200, every_seconds=0.5):
            statuses = [get(f"{server.url}/metrics")[0] for _ in range(20)]
            statuses += [get(f"{server.url}/healthz")[0] for _ in range(20)]
            held = sample(server, "mds_http_connections_open")
        assert statuses == [200] * 40
        assert held >= 200  # the slow clients were really open meanwhile
    finally:
        server.stop()


def test_a_client_trickling_its_head_is_cut_at_the_deadline(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    http = serve(registry, [toy], limits=HttpLimits(header_deadline_seconds=1.0))
    try:
        # One byte every 0.1 s: a per-read timeout would never fire; 100 bytes take 10 s.
        sent, answer = trickle_until_cut(http.address, every_seconds=0.1, most_bytes=100)
        assert status_line(answer) == "HTTP/1.1 408 Request Timeout"
        assert b"request head not complete within 1 s" in answer
        assert sent < 100
        assert sample(http, "mds_http_connections_refused_total", {"reason": "header_deadline"})
    finally:
        http.stop()


def test_a_long_request_line_gets_414(server: HttpServer) -> None:
    status, _, body = raw_request(server.url, "GET", "/metrics?" + "a" * 9000)
    assert status == "HTTP/1.1 414 URI Too Long"
    assert body == b"request line over 8192 bytes\n"
    # Just under the limit is served (an unknown query string is ignored).
    assert raw_request(server.url, "GET", "/metrics?" + "a" * 8000)[0] == "HTTP/1.1 200 OK"
    labels = {"reason": "request_line_too_long"}
    assert sample(server, "mds_http_connections_refused_total", labels) == 1


def test_large_header_fields_get_431(server: HttpServer) -> None:
    status, _, body = raw_request(server.url, "GET", "/metrics", "X-Big: " + "b" * 40_000 + "\r\n")
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert body == b"request header fields over 32768 bytes\n"
    many = "".join(f"X-{i}: {'c' * 100}\r\n" for i in range(400))  # 40 KB in 400 fields
    assert raw_request(server.url, "GET", "/metrics", many)[0].endswith(
        "431 Request Header Fields Too Large"
    )
    assert raw_request(server.url, "GET", "/metrics", "X-Fine: " + "d" * 30_000 + "\r\n")[0] == (
        "HTTP/1.1 200 OK"
    )


def test_a_100_mb_header_is_refused_after_its_first_bytes(server: HttpServer) -> None:
    answer = send_huge_header(server.address, 100)
    # 431, or a reset that came before the answer could be read: never a 200.
    assert answer == b"" or status_line(answer).endswith("431 Request Header Fields Too Large")
    assert get(f"{server.url}/healthz")[0] == 200


def test_a_request_body_is_never_read(server: HttpServer) -> None:
    # A gigabyte announced, ten bytes sent: the answer comes now and the connection closes.
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n0123456789"
        )
        answer = b""
        while data := sock.recv(65536):  # ends because the server closes
            answer += data
    assert status_line(answer) == "HTTP/1.1 405 Method Not Allowed"
    assert b"\r\nConnection: close\r\n" in answer


def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        for path in ("/metrics", "/healthz", "/nope"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
        assert response.status == 404
        assert sample(server, "mds_http_connections_open") >= 1  # ours, still open
    finally:
        connection.close()


def test_connections_over_the_limit_are_refused_with_503(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    http = serve(registry, [toy], limits=HttpLimits(max_connections=3))
    try:
        with SlowClients(http.address, 3, every_seconds=0.5):
            status, _, body = get(f"{http.url}/healthz")
            assert (status, body) == (503, b"too many connections\n")
        wait_for(lambda: get(f"{http.url}/healthz")[0] == 200)
        labels = {"reason": "connection_limit"}
        assert sample(http, "mds_http_connections_refused_total", labels) >= 1
    finally:
        http.stop()


def test_stop_returns_and_closes_slow_connections(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    http = serve(registry, [toy])
    with socket.create_connection(http.address, timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stopper = threading.Thread(target=http.stop, kwargs={"timeout": 2.0})
        stopper.start()
        stopper.join(10)  # generous: this asserts it returns, not how fast
        assert not stopper.is_alive()
        # Closed by the server, not left open (a reset: it had unread bytes).
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(65536) == b""
    with pytest.raises(OSError):
        socket.create_connection(http.address, timeout=1).close()


def test_basic_auth_guards_everything_but_healthz(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    http = serve(
        registry,
        [toy],
        auth=BasicAuth("prom", password_hash=hash_password("s3cret", iterations=1000)),
    )
    try:
        good = "Basic " + base64.b64encode(b"prom:s3cret").decode()
        bad = "Basic " + base64.b64encode(b"prom:wrong").decode()
        for path in ("/metrics", HEALTH_PATH, "/readyz"):
            status, headers, _ = get(http.url + path)
            assert status == 401
            assert headers["WWW-Authenticate"].startswith("Basic ")
            assert get(http.url + path, headers={"Authorization": bad})[0] == 401
        assert get(f"{http.url}/metrics", headers={"Authorization": good})[0] == 200
        # The second request takes the cached path; it must give the same answer.
        assert get(f"{http.url}/metrics", headers={"Authorization": good})[0] == 200
        assert get(f"{http.url}/metrics", headers={"Authorization": bad})[0] == 401
        assert get(f"{http.url}/healthz")[0] == 200
    finally:
        http.stop()


def test_a_password_guessing_client_gets_429_then_may_try_again_after_the_window(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_seconds=60.0, clock=lambda: now[0])
    auth = BasicAuth(
        "prom",
        password_hash=hash_password("s3cret", iterations=1000),
        limiter=limiter,
        clock=lambda: now[0],
    )
    http = serve(registry, [toy], auth=auth)
    try:
        good = {"Authorization": "Basic " + base64.b64encode(b"prom:s3cret").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"prom:guess").decode()}
        assert [get(f"{http.url}/metrics", headers=bad)[0] for _ in range(3)] == [401] * 3
        hashes = auth.hash_count
        status, headers, _ = get(f"{http.url}/metrics", headers=good)
        assert (status, headers["Retry-After"]) == (429, "60")
        assert get(f"{http.url}/healthz")[0] == 200  # liveness never needs credentials
        assert auth.hash_count == hashes  # the 429 cost no hash
        now[0] += 60.0
        status, _, body = get(f"{http.url}/metrics", headers=good)
        assert status == 200
        refusals = {
            s.labels["reason"]: s.value
            for f in text_string_to_metric_families(body.decode())
            if f.name == "mds_http_auth_refusals"
            for s in f.samples
            if s.name.endswith("_total")
        }
        assert refusals == {"unauthorized": 3.0, "throttled": 1.0}
    finally:
        http.stop()


def test_a_guessing_loop_costs_at_most_the_limiters_failures_in_hash_work(
    registry: CollectorRegistry, toy: ToyService
) -> None:
    # Default limiter: 5 failures per 60 s per address. 200 guesses, 5 hashes.
    auth = BasicAuth("prom", password_hash=hash_password("s3cret", iterations=1000))
    http = serve(registry, [toy], auth=auth)
    try:
        statuses = [
            get(
                f"{http.url}/metrics",
                headers={
                    "Authorization": "Basic " + base64.b64encode(f"prom:{i}".encode()).decode()
                },
            )[0]
            for i in range(200)
        ]
        assert statuses == [401] * 5 + [429] * 195
        assert auth.hash_count == 5
    finally:
        http.stop()


def test_basic_auth_rejects_malformed_headers() -> None:
    auth = BasicAuth("prom", password="pw")
    assert auth.check("Basic " + base64.b64encode(b"prom:pw").decode())
    for header in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"prom").decode(),
    ):
        assert not auth.check(header)
    assert not auth.check("Basic " + base64.b64encode(b"other:pw").decode())


def make_certificate(directory: Path) -> TlsFiles:
    openssl = require_executable("openssl", "openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return TlsFiles(cert_file=str(cert), key_file=str(key))


def test_tls_serves_https_with_the_given_certificate(
    tmp_path: Path, registry: CollectorRegistry, toy: ToyService
) -> None:
    tls = make_certificate(tmp_path)
    http = serve(registry, [toy], tls=tls)
    try:
        assert http.url.startswith("https://")
        context = ssl.create_default_context(cafile=tls.cert_file)
        status, _, body = get(f"{http.url}/metrics", context=context)
        assert status == 200
        assert b"mds_service_iterations_total" in body
        # Plain HTTP gets an error or a reset, never the metrics.
        with pytest.raises(OSError):
            urllib.request.urlopen(http.url.replace("https", "http") + "/metrics", timeout=5)
    finally:
        http.stop()


def test_a_tls_client_that_never_handshakes_is_cut_at_the_deadline(
    tmp_path: Path, registry: CollectorRegistry, toy: ToyService
) -> None:
    tls = make_certificate(tmp_path)
    http = serve(registry, [toy], tls=tls, limits=HttpLimits(header_deadline_seconds=1.0))
    try:
        with socket.create_connection(http.address, timeout=5) as sock:
            assert sock.recv(1) == b""  # closed by the server, before our 5 s timeout
        context = ssl.create_default_context(cafile=tls.cert_file)
        assert get(f"{http.url}/metrics", context=context)[0] == 200
        body = get(f"{http.url}/metrics", context=context)[2].decode()
        assert 'mds_http_connections_refused_total{reason="header_deadline"} 1.0' in body
    finally:
        http.stop()


def test_start_fails_when_the_address_is_taken(registry: CollectorRegistry) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        app = make_app(registry=registry, health=lambda: (200, {}), ready=lambda: (True, {}))
        with pytest.raises(OSError):
            HttpServer(app, host="127.0.0.1", port=port).start()
