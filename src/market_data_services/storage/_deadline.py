"""A client-side deadline on every blocking PostgreSQL call.

PostgreSQL's ``statement_timeout`` is enforced by the server, so it cannot help when the
server does not answer at all: a frozen backend, a stopped VM, a network path that drops
packets while the peer's kernel (or a proxy) still acknowledges them. TCP keepalives do
not help either, as long as something acknowledges. The call then blocks on the socket
for ever.

So every call that waits on the server (``execute``, ``executemany``, ``copy``,
``commit``, ``rollback``; SQLAlchemy's pre-ping is an ``execute``) is armed with a
deadline on one process-wide watchdog thread. A call that passes it has its socket shut
down (``socket.shutdown`` on the connection's file descriptor): the blocked wait returns
at once, the call raises ``DeadlineExceeded`` (a psycopg ``OperationalError``), the
connection is closed, and SQLAlchemy, seeing a closed connection, discards it from the
pool. The server's own timeout fires first when the server is alive, which keeps the
connection; the client's deadline is the server's plus ``CLIENT_GRACE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

logger = logging.getLogger(__name__)

#: How much longer than the server's statement timeout the client waits for an answer.
CLIENT_GRACE_SECONDS = 1.0


class DeadlineExceeded(psycopg.OperationalError):
    """The database did not answer a call within its deadline; the connection was closed."""


class _Watchdog:
    """Runs ``abort`` for each armed call that passes its deadline; one daemon thread.

    ``arm`` and ``disarm`` are called by the thread making the call, around it; the
    watchdog thread only waits for the earliest deadline. It starts at the first ``arm``.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition()
        # token -> (deadline, abort); guarded by _changed.
        self._armed: dict[int, tuple[float, Callable[[], None]]] = {}
        # Tokens whose abort ran and that were not disarmed yet; guarded by _changed.
        self._fired: set[int] = set()
        self._next_wake = math.inf  # guarded by _changed
        self._thread: threading.Thread | None = None  # guarded by _changed
        self._tokens = itertools.count(1)  # next() is atomic under the GIL

    def arm(self, seconds: float, abort: Callable[[], None]) -> int:
        token = next(self._tokens)
        with self._changed:
            deadline = self._clock() + seconds
            self._armed[token] = (deadline, abort)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mds-db-deadline", daemon=True
                )
                self._thread.start()
            elif deadline < self._next_wake:
                self._changed.notify()
        return token

    def disarm(self, token: int) -> bool:
        """End the watch of ``token``; whether its deadline passed and ``abort`` ran."""
        with self._changed:
            if self._armed.pop(token, None) is not None:
                return False
            self._fired.discard(token)
            return True

    def _run(self) -> None:
        with self._changed:
            while True:
                now = self._clock()
                for token in [t for t, (deadline, _) in self._armed.items() if deadline <= now]:
                    _, abort = self._armed.pop(token)
                    self._fired.add(token)
                    # Under the lock on purpose: the calling thread cannot disarm, return
                    # and close the connection (freeing its descriptor for reuse) while
                    # the abort runs. An abort only shuts a socket down: it never blocks.
                    try:
                        abort()
                    except Exception:
                        logger.exception("database.deadline_abort_failed")
                upcoming = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._next_wake = math.inf if upcoming is None else upcoming
                self._changed.wait(None if upcoming is None else max(0.0, upcoming - now))


_WATCHDOG = _Watchdog()


def _shut_down(connection: psycopg.Connection[Any]) -> None:
    """Make the call blocked on ``connection``'s socket return (called by the watchdog)."""
    try:
        fd = connection.fileno()
    except psycopg.Error:
        return  # already closed
    # A duplicate descriptor: shutting it down shuts the shared socket down, and closing
    # it leaves psycopg's descriptor to psycopg.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose calls that wait on the server end by a deadline.

    ``deadline_seconds`` (None: no deadline) is set once, right after connecting, by the
    thread that connected. ``_depth`` and ``_cut`` are only touched by the thread using
    the connection (one at a time, as for any DBAPI connection).
    """

    deadline_seconds: float | None = None
    _depth = 0
    #: Why the connection was cut off, once it was: every later call fails saying so.
    _cut: str | None = None

    @contextlib.contextmanager
    def bounded(self, what: str) -> Iterator[None]:
        """Arm the deadline around one call (calls inside it are covered by it)."""
        if self._cut is not None:
            # Not psycopg's "the connection is lost": the caller's cleanup (a rollback)
            # would report that instead of the reason.
            raise DeadlineExceeded(self._cut)
        seconds = self.deadline_seconds
        if seconds is None or self._depth:
            yield
            return
        token = _WATCHDOG.arm(seconds, lambda: _shut_down(self))
        self._depth += 1
        try:
            yield
        except psycopg.Error as exc:
            cut = self._end(token, what, seconds)
            if cut is not None:
                raise DeadlineExceeded(cut) from exc
            raise
        except BaseException:
            self._end(token, what, seconds)
            raise
        else:
            # If the answer came just as the deadline passed, the socket is shut down all
            # the same: _end closes the connection.
            self._end(token, what, seconds)

    def _end(self, token: int, what: str, seconds: float) -> str | None:
        """Disarm. If the deadline passed: close the connection (so the pool drops it)
        and return why."""
        self._depth -= 1
        if not _WATCHDOG.disarm(token):
            return None
        self._cut = (
            f"no answer from PostgreSQL to {what} within {seconds:g} s (the statement "
            f"timeout plus {CLIENT_GRACE_SECONDS:g} s): the connection was closed"
        )
        self.close()
        return self._cut

    def commit(self) -> None:
        with self.bounded("COMMIT"):
            super().commit()

    def rollback(self) -> None:
        with self.bounded("ROLLBACK"):
            super().rollback()


class BoundedCursor(psycopg.Cursor[Any]):
    """A psycopg cursor whose calls are bounded by its ``BoundedConnection``'s deadline."""

    def _bounded(self, what: str) -> contextlib.AbstractContextManager[None]:
        connection = self.connection
        if isinstance(connection, BoundedConnection):
            return connection.bounded(what)
        return contextlib.nullcontext()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        with self._bounded("a statement"):
            return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> None:
        with self._bounded("a batch of statements"):
            super().executemany(*args, **kwargs)

    @contextlib.contextmanager
    def copy(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        # The whole COPY, from the statement to the end of the data, as the server's
        # statement_timeout counts it.
        with self._bounded("a COPY"), super().copy(*args, **kwargs) as copy:
            yield copy

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with self._bounded("a streamed query"):
            yield from super().stream(*args, **kwargs)
