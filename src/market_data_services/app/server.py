"""The HTTP side of ``mds run``: one small WSGI app, served by ``app/httpd.py``.

Routes: ``/metrics`` (prometheus_client's own WSGI app: text or OpenMetrics by the
scraper's Accept header, gzip when asked), ``/healthz`` (the process answers),
``/readyz`` (database reachable, services started), ``/api/health/aggregators`` (the
specification's JSON, 200 or 503), ``/`` and ``/static/...`` (the landing page, when
given), anything else 404. HEAD answers on every path as GET
does, same status and headers, without the body.

The server (``HttpServer``, re-exported here) holds connections on an event loop and
runs this app on a bounded thread pool for complete requests only; its limits and why
it is built on h11 are in that module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, make_wsgi_app

from market_data_services._version import __version__
from market_data_services.app.api import API_PREFIX
from market_data_services.app.auth import BasicAuth
from market_data_services.app.httpd import HttpLimits, HttpServer, TlsFiles

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[int, dict[str, Any]]]
ReadyCheck = Callable[[], tuple[bool, dict[str, Any]]]

HEALTH_PATH = "/api/health/aggregators"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "200 OK",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


def _respond(
    start_response: StartResponse,
    status: int,
    body: bytes,
    content_type: str,
    extra: Iterable[tuple[str, str]] = (),
    *,
    head: bool = False,
) -> list[bytes]:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    start_response(_REASONS[status], headers)
    return [] if head else [body]


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def make_app(
    *,
    registry: CollectorRegistry,
    health: HealthCheck,
    ready: ReadyCheck,
    auth: BasicAuth | None = None,
    api: WSGIApplication | None = None,
    landing: WSGIApplication | None = None,
) -> WSGIApplication:
    """The WSGI app. ``/healthz`` answers without credentials (it tells nothing but "up").

    ``api`` (``app/api.py``) answers every path under ``/api/v1/``, after the same auth.
    ``landing`` (``app/landing.py``) answers ``/`` and ``/static/...``, after the same auth.
    """
    metrics_app = make_wsgi_app(registry)
    refusals = None
    if auth is not None:
        refusals = Counter(
            "mds_http_auth_refusals",
            "Requests refused by basic auth: unauthorized (401) or throttled (429, too many "
            "failures from the address, no hash computed).",
            ["reason"],
            registry=registry,
        )
        unauthorized, throttled = refusals.labels("unauthorized"), refusals.labels("throttled")

    def metrics(
        environ: WSGIEnvironment, start_response: StartResponse, *, head: bool
    ) -> list[bytes]:
        """prometheus_client's answer to a GET, with its length; the body dropped for HEAD.

        Its app refuses HEAD (405), so a HEAD is asked as a GET: same status and headers.
        """
        answer: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return None

        result = metrics_app({**environ, "REQUEST_METHOD": "GET"}, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = answer
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [] if head else [body]

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        head = method == "HEAD"
        is_api = api is not None and path.startswith(API_PREFIX)
        to_landing = landing is not None and (path == "/" or path.startswith("/static/"))
        known = path in ("/metrics", "/healthz", "/readyz", HEALTH_PATH, "/")
        if not (known or is_api or to_landing):
            return _respond(start_response, 404, b"not found\n", _TEXT, head=head)
        if method not in ("GET", "HEAD"):
            return _respond(
                start_response, 405, b"method not allowed\n", _TEXT, [("Allow", "GET, HEAD")]
            )
        if path == "/healthz":
            return _respond(start_response, 200, b"ok\n", _TEXT, head=head)
        if auth is not None:
            verdict = auth.authenticate(
                environ.get("HTTP_AUTHORIZATION"), client=environ.get("REMOTE_ADDR", "")
            )
            if verdict.retry_after_seconds is not None:
                # Too many failures from this address: refused before any hash work.
                throttled.inc()
                return _respond(
                    start_response,
                    429,
                    b"too many failed attempts\n",
                    _TEXT,
                    [("Retry-After", str(verdict.retry_after_seconds))],
                    head=head,
                )
            if not verdict.ok:
                unauthorized.inc()
                return _respond(
                    start_response,
                    401,
                    b"unauthorized\n",
                    _TEXT,
                    [("WWW-Authenticate", 'Basic realm="mds", charset="UTF-8"')],
                    head=head,
                )
        if is_api:
            assert api is not None
            return api(environ, start_response)
        if to_landing and landing is not None:
            return landing(environ, start_response)
        if path == "/metrics":
            return metrics(environ, start_response, head=head)
        if path == HEALTH_PATH:
            status, body = health()
            return _respond(start_response, status, _json(body), _JSON, head=head)
        if path == "/readyz":
            ok, checks = ready()
            return _respond(
                start_response, 200 if ok else 503, _json({"ready": ok, **checks}), _JSON, head=head
            )
        index = (f"mds {__version__}\n\n/metrics\n/healthz\n/readyz\n{HEALTH_PATH}\n").encode()
        return _respond(start_response, 200, index, _TEXT, head=head)

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            result: Iterable[bytes] = app(environ, start_response)
            return result
        except Exception:
            # A failing health or readiness check must not take the server down; the
            # server would answer 500 too, but without our log line.
            logger.exception("http.handler_failed", extra={"path": environ.get("PATH_INFO")})
            head = environ.get("REQUEST_METHOD") == "HEAD"
            return _respond(start_response, 500, b"internal error\n", _TEXT, [], head=head)

    return guarded


__all__ = ["HEALTH_PATH", "HttpLimits", "HttpServer", "TlsFiles", "make_app"]
