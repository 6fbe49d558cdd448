"""Deliver events to listeners on a background thread, in order, without blocking the sender.

The shape follows OpenTelemetry's BatchProcessor: ``submit`` never blocks (a bounded
queue drops the oldest event and counts the drop), one named daemon worker waits on a
condition and delivers outside every lock, and a failing listener is logged and counted
while the worker goes on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

Delivery = Callable[[], None]


class EventDispatcher:
    """One worker thread that runs submitted deliveries in submission order."""

    def __init__(self, *, max_queue: int = 1024, name: str = "mds-events") -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._name = name
        self._max_queue = max_queue
        # All fields below are guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Delivery] = deque()
        self._pending = 0  # submitted and not yet finished (queued + running)
        self._dropped = 0
        self._errors = 0
        self._thread: threading.Thread | None = None
        self._shutdown = False

    @property
    def dropped(self) -> int:
        """Deliveries dropped because the queue was full."""
        with self._cond:
            return self._dropped

    @property
    def errors(self) -> int:
        """Deliveries that raised."""
        with self._cond:
            return self._errors

    def submit(self, delivery: Delivery) -> None:
        """Queue ``delivery``; never blocks. The oldest queued delivery is dropped when full."""
        with self._cond:
            if self._shutdown:
                self._dropped += 1
                return
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._pending -= 1
                self._dropped += 1
                logger.warning(
                    "events.dropped", extra={"dispatcher": self._name, "dropped": self._dropped}
                )
            self._queue.append(delivery)
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted delivery has run; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued, stop the worker, and return whether it ended in time."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._shutdown)
                if not self._queue:
                    return  # shut down and drained
                delivery = self._queue.popleft()
            try:
                delivery()
            except Exception:
                logger.exception("events.delivery_failed", extra={"dispatcher": self._name})
                with self._cond:
                    self._errors += 1
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()


_default: EventDispatcher | None = None
_default_lock = threading.Lock()


def default_dispatcher() -> EventDispatcher:
    """The process-wide dispatcher breakers use unless given their own."""
    global _default  # noqa: PLW0603 - one documented global, created on first use
    with _default_lock:
        if _default is None:
            _default = EventDispatcher(name="mds-breaker-events")
        return _default
