"""The landing page and its static files over real HTTP (cheroot on a free port).

What the browser does with the page is tests/e2e/test_landing_page.py; here, what the
server answers: the page's facts, caching, 404 for what is not a shipped file, and the
same credentials as ``/metrics``.
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from market_data_services._version import __version__
from market_data_services.app.auth import BasicAuth
from market_data_services.app.landing import LandingPage, static_files
from market_data_services.app.server import HttpServer, TlsFiles, make_app
from tests.pki import make_pki

REPO = Path(__file__).resolve().parents[2]
CHARTS = "lightweight-charts/lightweight-charts.standalone.production.js"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve(
    landing: LandingPage, auth: BasicAuth | None = None, tls: TlsFiles | None = None
) -> HttpServer:
    app = make_app(
        registry=CollectorRegistry(),
        health=lambda: (200, {"overall_status": "healthy", "services": {}}),
        ready=lambda: (True, {}),
        auth=auth,
        landing=landing,
    )
    server = HttpServer(app, port=0, tls=tls)
    server.start()
    return server


def request(
    server: HttpServer, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as written (urllib would normalise ``..``)."""
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[HttpServer]:
    landing = LandingPage(
        database_url="postgresql+psycopg://mds:s3cret-pass@db.example:5432/market", clock=clock
    )
    server = serve(landing)
    yield server
    server.stop()


def test_page_names_version_masked_database_uptime_and_endpoints(
    server: HttpServer, clock: Clock
) -> None:
    clock.now += 2 * 86_400 + 3 * 3600 + 4 * 60 + 5
    status, headers, body = request(server, "/")
    page = body.decode()
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert f"<title>mds {__version__}</title>" in page
    assert "postgresql+psycopg://mds:***@db.example:5432/market" in page
    assert "s3cret" not in page
    assert '<dd id="uptime" data-seconds="183845.000">2d 03:04:05</dd>' in page
    for path in ("/metrics", "/healthz", "/readyz", "/api/health/aggregators"):
        assert f'<a href="{path}">' in page
    assert '<a href="/api/v1/openapi.json">' in page
    assert "<option>1m</option>" in page
    assert "<option>1d</option>" in page


def test_every_file_the_page_loads_is_served(server: HttpServer) -> None:
    _, _, body = request(server, "/")
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', body.decode())
    assert len(urls) == 5  # css, chart library, our script, the licence and the notice
    for url in urls:
        status, _, content = request(server, url)
        assert (status, url) == (200, url)
        assert content


def test_static_files_are_immutable_for_a_year_and_revalidate_by_etag(server: HttpServer) -> None:
    shipped = static_files()[CHARTS]
    status, headers, body = request(server, f"/static/{CHARTS}?v={shipped.version}")
    assert status == 200
    assert body == shipped.body
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["ETag"] == shipped.etag
    assert headers["Content-Length"] == str(len(body))

    status, headers, body = request(
        server, f"/static/{CHARTS}", headers={"If-None-Match": shipped.etag}
    )
    assert (status, body) == (304, b"")
    assert headers["ETag"] == shipped.etag

    status, _, _ = request(server, f"/static/{CHARTS}", headers={"If-None-Match": '"other"'})
    assert status == 200


def test_head_on_a_static_file_has_the_get_headers_and_no_body(server: HttpServer) -> None:
    _, get_headers, get_body = request(server, "/static/landing.css")
    status, headers, body = request(server, "/static/landing.css", method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(get_body))
    assert headers["ETag"] == get_headers["ETag"]
    status, headers, body = request(server, "/", method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/",
        "/static/lightweight-charts",
        "/static/lightweight-charts/",
        # Files that exist beside static/ in the package, and on the machine.
        "/static/../landing.py",
        "/static/%2e%2e/landing.py",
        "/static/..%2flanding.py",
        "/static/lightweight-charts/../../server.py",
        "/static//etc/passwd",
        "/static/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/.%00./landing.py",
        "/staticlanding.js",
    ],
)
def test_anything_but_a_shipped_file_is_404(server: HttpServer, path: str) -> None:
    status, _, body = request(server, path)
    assert status == 404, body[:200]
    assert b"import" not in body
    assert b"root:" not in body


def test_the_page_and_its_files_need_the_credentials_metrics_needs(clock: Clock) -> None:
    auth = BasicAuth("prometheus", password="correct horse")
    server = serve(LandingPage(database_url="sqlite:///mds.sqlite", clock=clock), auth)
    good = {"Authorization": "Basic " + base64.b64encode(b"prometheus:correct horse").decode()}
    try:
        for path in ("/", "/static/landing.js", "/static/missing.js", "/metrics"):
            status, headers, _ = request(server, path)
            assert (path, status) == (path, 401)
            assert headers["WWW-Authenticate"].startswith("Basic")
        for path, expected in (("/", 200), ("/static/landing.js", 200), ("/metrics", 200)):
            status, _, _ = request(server, path, headers=good)
            assert (path, status) == (path, expected)
        assert request(server, "/static/missing.js", headers=good)[0] == 404
    finally:
        server.stop()


def test_the_page_and_its_files_are_served_over_tls_like_metrics(
    tmp_path: Path, clock: Clock
) -> None:
    pki = make_pki(tmp_path)
    tls = TlsFiles(cert_file=str(pki.server_cert), key_file=str(pki.server_key))
    server = serve(LandingPage(database_url="sqlite:///mds.sqlite", clock=clock), tls=tls)
    try:
        host, port = server.address
        context = ssl.create_default_context(cafile=str(pki.ca))
        for path in ("/", "/static/landing.js"):
            connection = http.client.HTTPSConnection(host, port, timeout=5, context=context)
            connection.request("GET", path)
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        server.stop()


def test_the_database_url_is_escaped_into_the_page(clock: Clock) -> None:
    landing = LandingPage(database_url="sqlite:////data/<script>alert(1)</script>.db", clock=clock)
    page = landing.render()
    assert "<script>alert" not in page
    assert "sqlite:////data/&lt;script&gt;alert(1)&lt;/script&gt;.db" in page


def test_other_methods_on_the_page_get_405(server: HttpServer) -> None:
    status, headers, _ = request(server, "/", method="POST")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert request(server, "/static/landing.js", method="DELETE")[0] == 405


def test_the_chart_library_ships_with_its_licence_and_notice(server: HttpServer) -> None:
    _, _, library = request(server, f"/static/{CHARTS}")
    assert library.startswith(b"/*!\n * @license\n * TradingView Lightweight Charts")
    assert b"Licensed under Apache License 2.0" in library[:400]
    _, headers, licence = request(server, "/static/lightweight-charts/LICENSE")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert b"Apache License" in licence
    assert b"Version 2.0, January 2004" in licence
    _, _, notice = request(server, "/static/lightweight-charts/NOTICE")
    assert b"TradingView Lightweight Charts" in notice
    assert b"https://www.tradingview.com/" in notice


@pytest.mark.slow
def test_the_wheel_carries_the_page_files(tmp_path: Path) -> None:
    """pip builds the wheel as an installer would; the static files must be in it."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), REPO],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("market_data_services-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in static_files():
        assert f"market_data_services/app/static/{name}" in names
    assert {"landing.js", "landing.css", CHARTS, "lightweight-charts/LICENSE"} <= set(
        static_files()
    )
