"""The landing page at ``/`` and the files it loads from ``/static/``.

What a person who opens the service's address in a browser wants first: which process
this is (version, database with its password masked, uptime), where the endpoints are,
how the services are doing (a table that refreshes itself from the health JSON), and the
candles they derive (a chart read from ``/api/v1/candles``). The HTML is rendered here;
the script, the style sheet and TradingView's lightweight-charts are files inside the
package, so the page fetches nothing from elsewhere and nothing is built at install.

Static files: the names served are the files present in the package's ``static/`` folder,
read once; a request path is only ever looked up in that table, so no path reaches the
file system (``..``, encoded or not, is simply an unknown name: 404). Each has a strong
ETag (SHA-256 of its bytes) and ``Cache-Control: immutable`` for a year; the page names
each file with ``?v=<hash>``, so a new release changes the URL rather than waiting on
caches, and a revalidating client gets ``304``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from market_data_services._version import __version__
from market_data_services.app.config import mask_url
from market_data_services.market import TIMEFRAMES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

STATIC_PREFIX = "/static/"
#: A year: the longest ``max-age`` caches honour; the ``?v=`` in the URL does the rest.
_IMMUTABLE = "public, max-age=31536000, immutable"
#: Only our own files run; lightweight-charts sets element styles from script.
_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Content types by suffix; anything else (LICENSE, NOTICE) is plain text.
_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/markdown", ".png": "image/png"}
#: Endpoints the page links to, with what each answers.
_LINKS = (
    ("/metrics", "Prometheus metrics"),
    ("/healthz", "liveness"),
    ("/readyz", "readiness (JSON)"),
    ("/api/health/aggregators", "service health (JSON)"),
    ("/api/v1/openapi.json", "the data API (OpenAPI)"),
)


@dataclass(frozen=True, kw_only=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    @property
    def version(self) -> str:
        """The short content hash the page puts in the file's URL."""
        return self.etag.strip('"')[:16]


def _content_type(name: str) -> str:
    """By suffix, from our own table: the system's mime database differs between hosts."""
    kind = _TYPES.get(PurePosixPath(name).suffix, "text/plain")
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


@functools.cache
def static_files() -> Mapping[str, StaticFile]:
    """Every file of the package's ``static/`` folder by its path there, read once.

    Read at the first request, not at import or construction (no I/O there). Two server
    threads may both read on that first call; each builds the same table and one is kept.
    """
    files = {}
    for name, entry in _walk(resources.files(__package__ or __name__) / "static"):
        body = entry.read_bytes()
        files[name] = StaticFile(
            body=body,
            content_type=_content_type(name),
            etag=f'"{hashlib.sha256(body).hexdigest()}"',
        )
    return files


_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", _CSP),
    _NOSNIFF,
]
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]


def _send(
    start_response: StartResponse,
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    head: bool,
) -> list[bytes]:
    """The answer with its length; HEAD gets the same headers and no body."""
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [] if head else [body]


def _duration(seconds: float) -> str:
    """``3d 04:05:06`` or ``04:05:06``; the page's script keeps it counting."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


class LandingPage:
    """A WSGI app for ``/`` and ``/static/...``; GET and HEAD (make_app refuses the rest).

    ``database_url`` is masked here, so no caller can put a password on the page.
    ``clock`` measures the uptime from construction.
    """

    def __init__(
        self,
        *,
        database_url: str,
        version: str = __version__,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = mask_url(database_url)
        self._version = version
        self._clock = clock
        self._started = clock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        head = environ.get("REQUEST_METHOD") == "HEAD"
        if path == "/":
            return _send(start_response, "200 OK", _PAGE_HEADERS, self.render().encode(), head)
        name = path.removeprefix(STATIC_PREFIX) if path.startswith(STATIC_PREFIX) else None
        static = None if name is None else static_files().get(name)
        if static is None:
            return _send(start_response, "404 Not Found", _NOT_FOUND_HEADERS, b"not found\n", head)
        cache = [("ETag", static.etag), ("Cache-Control", _IMMUTABLE)]
        wanted = environ.get("HTTP_IF_NONE_MATCH", "")
        if wanted.strip() == "*" or static.etag in wanted:
            start_response("304 Not Modified", cache)
            return []
        headers = [("Content-Type", static.content_type), _NOSNIFF, *cache]
        return _send(start_response, "200 OK", headers, static.body, head)

    def render(self) -> str:
        """The page: process facts filled in here, the rest drawn by ``landing.js``."""
        files = static_files()

        def url(name: str) -> str:
            return html.escape(f"{STATIC_PREFIX}{name}?v={files[name].version}")

        uptime = self._clock() - self._started
        links = "\n".join(
            f'      <li><a href="{path}">{path}</a> {html.escape(what)}</li>'
            for path, what in _LINKS
        )
        return _PAGE.format(
            version=html.escape(self._version),
            database=html.escape(self._database),
            uptime_seconds=f"{uptime:.3f}",
            uptime=_duration(uptime),
            links=links,
            timeframes="".join(f"<option>{tf}</option>" for tf in TIMEFRAMES),
            css=url("landing.css"),
            charts=url("lightweight-charts/lightweight-charts.standalone.production.js"),
            script=url("landing.js"),
        )


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>mds {version}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <header>
    <h1>market-data-services <span class="version">{version}</span></h1>
    <dl class="facts">
      <dt>database</dt><dd id="database">{database}</dd>
      <dt>uptime</dt><dd id="uptime" data-seconds="{uptime_seconds}">{uptime}</dd>
      <dt>health</dt><dd id="overall">&hellip;</dd>
    </dl>
    <ul class="links">
{links}
    </ul>
  </header>
  <main>
    <section>
      <h2>Services <small id="services-updated"></small></h2>
      <table id="services">
        <thead><tr>
          <th>service</th><th>status</th><th>breaker</th><th>last success</th>
          <th>iterations</th><th>errors</th><th>symbols</th>
        </tr></thead>
        <tbody></tbody>
      </table>
      <p id="services-error" class="error" hidden></p>
    </section>
    <section>
      <h2>Candles</h2>
      <form id="chart-form">
        <label>symbol <select id="symbol" name="symbol"></select></label>
        <label>timeframe <select id="timeframe" name="timeframe">{timeframes}</select></label>
        <span id="chart-status"></span>
      </form>
      <div id="chart" data-candles="0"></div>
      <p class="note">Times in UTC. The last candle, in grey, is the bucket still open.
        Chart: <a href="/static/lightweight-charts/LICENSE">TradingView Lightweight
        Charts</a> (<a href="/static/lightweight-charts/NOTICE">notice</a>).</p>
    </section>
  </main>
  <script src="{charts}"></script>
  <script src="{script}"></script>
</body>
</html>
"""
