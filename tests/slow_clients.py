"""Hostile HTTP clients on real sockets: slow (slowloris) and huge headers.

Used by the server's tests (in-process and against ``mds run``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

SLOW_HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "


class SlowClients:
    """``count`` connections that each send a request head and never finish it.

    Each sends the start of a head, then one more byte every ``every_seconds`` (each byte
    would reset a per-read socket timeout). A connection the server closes (its header
    deadline) is opened again at once, as an attacker would, so ``count`` stay open.
    """

    def __init__(self, address: tuple[str, int], count: int, *, every_seconds: float = 1.0):
        self._address = address
        self._count = count
        self._every = every_seconds
        self._sockets: list[socket.socket] = []  # owned by the trickle thread once started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)
        self.reopened = 0  # connections the server closed and we opened again

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=5)
        sock.sendall(SLOW_HEAD)
        return sock

    def __enter__(self) -> SlowClients:
        self._sockets = [self._connect() for _ in range(self._count)]
        self._thread.start()
        return self

    def _trickle(self) -> None:
        while not self._stop.wait(self._every):
            for i, sock in enumerate(self._sockets):
                if self._stop.is_set():
                    return
                readable, _, _ = select.select([sock], [], [], 0)
                try:
                    if readable:  # the server answered (408) or closed: start over
                        raise ConnectionResetError
                    sock.send(b"a")
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        self._sockets[i] = self._connect()
                        self.reopened += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self._sockets:
            sock.close()


def send_huge_header(address: tuple[str, int], megabytes: int) -> bytes:
    """Sends a request whose one header field is ``megabytes`` MB; returns what came back.

    The server should answer 431 and close long before the end; the close may reset the
    connection before its answer is read, so an empty answer means "closed", too.
    """
    chunk = b"a" * (1 << 20)
    answer = b""
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            for _ in range(megabytes):
                sock.sendall(chunk)
        except OSError:
            pass  # closed by the server: what we want
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer += data
    return answer


def trickle_until_cut(
    address: tuple[str, int], *, every_seconds: float, most_bytes: int
) -> tuple[int, bytes]:
    """Sends a head one byte at a time until the server answers; (bytes sent, answer)."""
    sent = 0
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        while sent < most_bytes:
            # Waits one pace for the server's answer; none yet: the next byte.
            readable, _, _ = select.select([sock], [], [], every_seconds if sent else 0)
            if readable:
                break
            try:
                sock.send(b"a" if sent else b"X-Slow: ")
            except OSError:
                break
            sent += 1
        answer = b""
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer += data
    return sent, answer
