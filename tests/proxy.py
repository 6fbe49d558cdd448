"""A TCP forwarder on 127.0.0.1 that can be paused, to play a hung database server.

Paused, it keeps every socket open and accepts new connections, but forwards nothing:
to the client it is a server whose process froze while its kernel still acknowledges
packets (the case no server-side timeout and no TCP keepalive can detect). Resumed, it
forwards what it held back, and the server answers again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536


class PausableProxy:
    """``with PausableProxy(host, port) as proxy:`` listens on ``proxy.port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        # Set while forwarding; pumps wait on it while paused. Set by close() too, so
        # that waiting pumps wake and see _closed.
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # guarded by _lock
        self._threads: list[threading.Thread] = []  # guarded by _lock
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def __enter__(self) -> PausableProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def pause(self) -> None:
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self._forwarding.set()
        with contextlib.suppress(OSError):
            # Wakes the blocked accept() (closing alone does not, on Linux).
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._acceptor.join(5)
        for thread in threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pumps = [
                threading.Thread(target=self._pump, args=(client, server), daemon=True),
                threading.Thread(target=self._pump, args=(server, client), daemon=True),
            ]
            with self._lock:
                self._sockets += [client, server]
                self._threads += pumps
            for pump in pumps:
                pump.start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            # Paused: read nothing, so the sender's data waits in kernel buffers.
            self._forwarding.wait()
            if self._closed.is_set():
                return
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            # Paused while this read was blocked: hold what was read until resumed.
            self._forwarding.wait()
            if not data or self._closed.is_set():
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            try:
                target.sendall(data)
            except OSError:
                return
