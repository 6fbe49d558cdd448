"""The HTTP server of ``mds run``: an event loop that holds connections, and a bounded
thread pool that runs the WSGI app on complete requests only.

Why this shape: a server that gives each connection a thread while it reads the request
(cheroot, which we used before, and wsgiref) can be starved by a few clients that send
one header byte every few seconds, each byte resetting a per-read socket timeout, until
every worker is held and ``/metrics`` stops answering. Here one asyncio loop reads every
connection; a waiting connection costs a few KB and no thread. A request reaches the
pool only once its whole head (request line and header fields) has arrived, and that
must happen within ``header_deadline_seconds`` of the connection opening (or of the
previous response, on a kept-alive connection): a trickling client is cut at the
deadline, however often it sends. Beside that: at most ``max_connections`` connections
(more are refused at once), the request line and the header fields have size limits
(414 and 431 past them), and request bodies are never read (every route takes none; a
request that announces one is answered and its connection closed).

Why h11 (python-hyper/h11, the HTTP/1.1 parser under httpx, httpcore and uvicorn): it is
maintained, small, pure Python, has no dependencies and does no I/O of its own, so the
deadline, the limits and TLS (the standard ``ssl`` module through asyncio, including the
client certificates of an exporter-toolkit web config) stay ours to state and test.
uvicorn and hypercorn were the alternatives: both are ASGI servers, so they would need a
WSGI adapter and bring their own event loop policy and signal handling into a process
that already has its own, and neither has a whole-request header deadline or tells a
long request line (414) from large header fields (431). waitress has no TLS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import re
import socket
import ssl
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import h11
from prometheus_client import CollectorRegistry, Counter, Gauge

from market_data_services.app.webconfig import ServerTls

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

#: Why a connection was refused before the app saw a request (the metric's label values).
REFUSAL_REASONS = (
    "connection_limit",
    "header_deadline",
    "request_line_too_long",
    "header_fields_too_large",
    "bad_request",
)
_READ_SIZE = 65536
_HEAD_END = re.compile(rb"\n\r?\n")


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    """What one client may hold. The defaults are ``[http]``'s (see the README)."""

    #: The whole request head must arrive within this many seconds of the connection
    #: opening (TLS handshake included) or of the previous response; a response must be
    #: taken by the client within it too.
    header_deadline_seconds: float = 10.0
    #: Open connections at most; one more is refused at once (503 on plain HTTP).
    max_connections: int = 512
    #: The request line (method, target, version) at most, without its line end: 414.
    max_request_line_bytes: int = 8192
    #: The header fields together at most, line ends included: 431.
    max_header_bytes: int = 32768


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """A certificate and its key (``http.tls_cert_file``, ``http.tls_key_file``)."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class _Refusal:
    reason: str
    status: str
    message: str


class _HeadMeter:
    """Counts the bytes of one request head as they arrive, to refuse it early.

    h11 buffers a head until it is complete; this looks at each chunk once, so a 100 MB
    header is refused after its first ``max_header_bytes``, not buffered.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self._limits = limits
        self._size = 0  # bytes of this head seen so far
        self._line_end: int | None = None  # offset just past the request line's "\n"
        self._tail = b""  # the last bytes seen, for a head end split between chunks
        self._done = False

    @property
    def started(self) -> bool:
        """Whether any byte of this head has arrived."""
        return self._size > 0

    def feed(self, data: bytes) -> _Refusal | None:
        if self._done:
            return None
        limits = self._limits
        window = self._tail + data
        base = self._size - len(self._tail)  # offset of window[0] in the head
        self._size += len(data)
        self._tail = window[-2:]
        if self._line_end is None:
            newline = window.find(b"\n")
            if newline >= 0:
                self._line_end = base + newline + 1
            elif self._size > limits.max_request_line_bytes + 2:
                return self._too_long()
        if self._line_end is None:
            return None
        if self._line_end > limits.max_request_line_bytes + 2:  # + "\r\n"
            return self._too_long()
        end = _HEAD_END.search(window, max(0, self._line_end - 1 - base))
        if end is not None:
            self._done = True
            fields = base + end.end() - self._line_end
        else:
            fields = self._size - self._line_end
        if fields > limits.max_header_bytes:
            return _Refusal(
                "header_fields_too_large",
                "431 Request Header Fields Too Large",
                f"request header fields over {limits.max_header_bytes} bytes",
            )
        return None

    def _too_long(self) -> _Refusal:
        return _Refusal(
            "request_line_too_long",
            "414 URI Too Long",
            f"request line over {self._limits.max_request_line_bytes} bytes",
        )


def _raw_response(status: str, message: str) -> bytes:
    """A complete response that closes the connection, for errors before any request."""
    body = f"{message}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class HttpServer:
    """``app`` served on a named thread; ``start()`` binds, ``stop()`` ends it.

    The constructor does no I/O. ``start()`` raises OSError when the address is taken.
    ``threads`` run the app; the event loop thread ``mds-http`` does all socket work.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 8,
        tls: TlsFiles | ServerTls | None = None,
        limits: HttpLimits | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._app = app
        self._host, self._port = host, port
        self._threads = threads
        self._tls = tls
        self._limits = limits or HttpLimits()
        self._refused = Counter(
            "mds_http_connections_refused",
            "Connections closed before the app saw a request, by reason: connection_limit, "
            "header_deadline, request_line_too_long (414), header_fields_too_large (431), "
            "bad_request (400).",
            ["reason"],
            registry=registry,
        )
        self._refusals = {reason: self._refused.labels(reason) for reason in REFUSAL_REASONS}
        self._open_gauge = Gauge(
            "mds_http_connections_open",
            "HTTP connections open now (the limit is http.max_connections).",
            registry=registry,
        )
        # Owned by the thread calling start/stop:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._bound: tuple[str, int] = (host, port)
        # Owned by the event loop thread (once started):
        self._listener: socket.socket | None = None
        #: Each open connection's task and socket.
        self._connections: dict[asyncio.Task[None], socket.socket] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._tls is not None:
            self._ssl = self._ssl_context()
        sock = self._bind()
        loop = asyncio.new_event_loop()
        try:
            sock.listen(min(self._limits.max_connections, socket.SOMAXCONN))
            # Our own accept (not asyncio.start_server): a connection is counted, and
            # refused over the limit, before any TLS work; and asyncio 3.11's Server leaks
            # a connection accepted in the same loop turn as its close().
            loop.add_reader(sock.fileno(), self._accept, sock, loop)
        except BaseException:
            loop.close()
            sock.close()
            raise
        self._listener = sock
        self._bound = sock.getsockname()[:2]
        self._loop = loop
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._threads, thread_name_prefix="mds-http-worker"
        )
        self._thread = threading.Thread(
            target=self._serve, args=(loop,), name="mds-http", daemon=True
        )
        self._thread.start()
        logger.info("http.listening", extra={"url": self.url})

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._tls is not None
        if isinstance(self._tls, ServerTls):
            # A web config file's TLS: minimum version and client certificates.
            return self._tls.context()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._tls.cert_file, self._tls.key_file)
        return context

    def _bind(self) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(
            self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_forever()
        except Exception:
            logger.exception("http.server_failed")
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Closes the listener and every connection; returns within ``timeout`` seconds.

        A request the app is running is abandoned (its worker thread ends on its own).
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        with contextlib.suppress(RuntimeError):  # the loop already ended
            closing = asyncio.run_coroutine_threadsafe(self._close(), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                closing.result(timeout / 2)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout / 2)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        logger.info("http.stopped")

    async def _close(self) -> None:
        self._closing = True
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        connections = dict(self._connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.wait(connections, timeout=1.0)
        # A transport's abort() closes its socket a loop turn later: give it the turns.
        for _ in range(3):
            await asyncio.sleep(0)
        for sock in connections.values():
            sock.close()  # a task cancelled before its first step never ran its finally

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self._bound
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{port}"

    # -- one connection (event loop thread) ------------------------------------------------

    def _accept(self, listener: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """The listener is readable: accept what waits, each on its own task."""
        for _ in range(64):  # then let the loop serve the open connections a turn
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, or closed by stop()
                if not self._closing:
                    self._pause_accepting(listener, loop, exc)
                return
            if self._closing or len(self._connections) >= self._limits.max_connections:
                self._refuse_at_once(sock)
                continue
            task = loop.create_task(self._on_connection(sock))
            self._connections[task] = sock
            self._open_gauge.set(len(self._connections))

    def _pause_accepting(
        self, listener: socket.socket, loop: asyncio.AbstractEventLoop, error: OSError
    ) -> None:
        """Out of file descriptors: the listener stays readable, so accepting again at
        once would spin; try again in a second, when some connection may have closed."""
        logger.warning("http.accept_failed", extra={"detail": repr(error)})
        loop.remove_reader(listener.fileno())

        def resume() -> None:
            if not self._closing:
                loop.add_reader(listener.fileno(), self._accept, listener, loop)

        loop.call_later(1.0, resume)

    def _refuse_at_once(self, sock: socket.socket) -> None:
        """Over the connection limit: a 503 on plain HTTP (a TLS client could not read
        it), then close; no task, no buffer, no handshake."""
        if not self._closing:
            self._refusals["connection_limit"].inc()
            if self._ssl is None:
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.send(_raw_response("503 Service Unavailable", "too many connections"))
        sock.close()

    async def _on_connection(self, sock: socket.socket) -> None:
        task = asyncio.current_task()
        writer: asyncio.StreamWriter | None = None
        # The first head's deadline counts from the accept: a TLS handshake uses it too.
        deadline = asyncio.get_running_loop().time() + self._limits.header_deadline_seconds
        try:
            writer, reader = await self._open_streams(sock, deadline)
            if writer is not None:
                await self._converse(reader, writer, deadline)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            logger.debug("http.connection_error", extra={"detail": repr(exc)})
        except asyncio.CancelledError:
            pass  # stop() ends the connection: nothing to report
        finally:
            if task is not None:
                self._connections.pop(task, None)
            self._open_gauge.set(len(self._connections))
            if writer is not None:
                writer.transport.abort()
            else:
                sock.close()

    async def _open_streams(
        self, sock: socket.socket, deadline: float
    ) -> tuple[asyncio.StreamWriter | None, asyncio.StreamReader]:
        """Streams on an accepted socket, after the TLS handshake (within the deadline)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            async with asyncio.timeout_at(deadline):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self._ssl
                )
        except TimeoutError:
            self._refusals["header_deadline"].inc()  # a TLS handshake never finished
            return None, reader
        except (ConnectionError, ssl.SSLError) as exc:
            logger.debug("http.handshake_failed", extra={"detail": repr(exc)})
            return None, reader
        # drain() then waits until every byte is with the kernel, so that closing the
        # connection after it never cuts an answer short.
        transport.set_write_buffer_limits(high=0)
        return asyncio.StreamWriter(transport, protocol, reader, loop), reader

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        limits = self._limits
        peer = writer.get_extra_info("peername") or ("", 0)
        conn = h11.Connection(
            h11.SERVER,
            # Ours refuse first (414/431); h11's own bound is a backstop.
            max_incomplete_event_size=limits.max_request_line_bytes + limits.max_header_bytes + 8,
        )
        while True:
            request = await self._read_head(conn, reader, writer, deadline)
            if request is None:
                return
            if not await self._respond(conn, request, writer, peer):
                return
            conn.start_next_cycle()
            deadline = loop.time() + limits.header_deadline_seconds

    async def _read_head(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> h11.Request | None:
        """The next request's head, or None when the connection is to be closed."""
        meter = _HeadMeter(self._limits)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(
                    writer, _Refusal("bad_request", "400 Bad Request", f"bad request: {exc}")
                )
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed, or a PAUSED state we do not enter
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(_READ_SIZE)
            except TimeoutError:
                if conn.their_state is h11.IDLE and not meter.started:
                    return None  # an idle kept-alive connection: close it quietly
                await self._refuse(
                    writer,
                    _Refusal(
                        "header_deadline",
                        "408 Request Timeout",
                        f"request head not complete within "
                        f"{self._limits.header_deadline_seconds:g} s",
                    ),
                )
                return None
            refusal = meter.feed(data)
            if refusal is not None:
                await self._refuse(writer, refusal)
                return None
            conn.receive_data(data)

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: _Refusal) -> None:
        self._refusals[refusal.reason].inc()
        logger.debug("http.refused", extra={"reason": refusal.reason})
        writer.write(_raw_response(refusal.status, refusal.message))
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(1.0):
                await writer.drain()

    async def _respond(
        self,
        conn: h11.Connection,
        request: h11.Request,
        writer: asyncio.StreamWriter,
        peer: tuple[Any, ...],
    ) -> bool:
        """Runs the app on the pool and sends its answer; True to keep the connection."""
        loop = asyncio.get_running_loop()
        # The body is never read: with one announced, the connection closes after this.
        has_body = not self._request_ended(conn)
        environ = self._environ(request, peer)
        answer = await loop.run_in_executor(self._pool, self._run_app, environ)
        headers = answer.headers
        if has_body:
            headers = [*headers, (b"Connection", b"close")]
        events: list[h11.Event] = [
            h11.Response(status_code=answer.status, headers=headers, reason=answer.reason)
        ]
        if request.method != b"HEAD" and answer.body:
            events.append(h11.Data(data=answer.body))
        events.append(h11.EndOfMessage())
        writer.write(b"".join(conn.send(event) or b"" for event in events))
        try:
            async with asyncio.timeout(self._limits.header_deadline_seconds):
                await writer.drain()
        except TimeoutError:
            return False
        return not has_body and conn.our_state is h11.DONE and conn.their_state is h11.DONE

    @staticmethod
    def _request_ended(conn: h11.Connection) -> bool:
        """Whether the request announced no body (h11 then ends it at once)."""
        try:
            return isinstance(conn.next_event(), h11.EndOfMessage)
        except h11.RemoteProtocolError:
            return False

    # -- the app (worker threads) ----------------------------------------------------------

    def _environ(self, request: h11.Request, peer: tuple[Any, ...]) -> WSGIEnvironment:
        target = request.target
        if target.startswith((b"http://", b"https://")):  # absolute form: keep the path
            target = b"/" + target.split(b"/", 3)[-1] if target.count(b"/") >= 3 else b"/"
        path, _, query = target.partition(b"?")
        host, port = self.address
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": str(peer[0]),
            "REMOTE_PORT": str(peer[1]) if len(peer) > 1 else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._tls is not None else "http",
            "wsgi.input": io.BytesIO(),  # bodies are never read
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1")
            if "_" in name:
                continue  # X_Auth would pose as X-Auth in the environ: dropped, as nginx does
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            value = raw_value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _run_app(self, environ: WSGIEnvironment) -> _Answer:
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        try:
            result: Iterable[bytes] = self._app(environ, start_response)
            try:
                body = b"".join([*written, *result])
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            status, headers = started
        except Exception:
            logger.exception("http.app_failed", extra={"path": environ.get("PATH_INFO")})
            status, headers, body = "500 Internal Server Error", [], b"internal error\n"
            headers = [("Content-Type", "text/plain; charset=utf-8")]
        code, _, reason = status.partition(" ")
        names = {name.lower() for name, _ in headers}
        extra = [("Date", formatdate(usegmt=True))]
        if "content-length" not in names and (body or environ["REQUEST_METHOD"] != "HEAD"):
            extra.append(("Content-Length", str(len(body))))
        return _Answer(
            int(code),
            reason.encode("latin-1"),
            [(k.encode("latin-1"), v.encode("latin-1")) for k, v in [*headers, *extra]],
            body,
        )
