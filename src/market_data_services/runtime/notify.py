"""Notify a webhook when a circuit breaker changes state.

``WebhookNotifier`` is a breaker listener: calling it only queues the event, and its own
daemon thread POSTs the JSON with a timeout and a bounded number of retries, so a webhook
that hangs delays neither the service loop nor other listeners.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from market_data_services.runtime import _validate
from market_data_services.runtime.breaker import StateChange
from market_data_services.runtime.service import utc_iso

logger = logging.getLogger(__name__)


def event_payload(event: StateChange) -> dict[str, Any]:
    """The JSON body the notifier posts."""
    return {
        "service": event.breaker,
        "old_state": event.old.value,
        "new_state": event.new.value,
        "reason": event.reason,
        "time": utc_iso(event.timestamp),
        "sequence": event.sequence,
        "recent_error": event.last_error,
        "open_timeout_seconds": event.open_timeout_seconds,
    }


class WebhookNotifier:
    """POST each state change as JSON to ``url``.

    Retries ``max_retries`` times on connection errors and 5xx answers, waiting
    ``backoff_seconds`` doubled each time; 4xx answers are not retried. Events beyond
    ``max_queue`` waiting drop the oldest (counted in ``dropped``).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        headers: Mapping[str, str] | None = None,
        max_queue: int = 100,
        states: frozenset[str] | None = None,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout_seconds = _validate.seconds(timeout_seconds, "timeout_seconds")
        self.max_retries = _validate.positive_int(max_retries, "max_retries", minimum=0)
        self.backoff_seconds = _validate.seconds(
            backoff_seconds, "backoff_seconds", allow_zero=True
        )
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.states = states  # only these new states are sent; None sends all
        self._open = opener or urllib.request.urlopen
        self._max_queue = _validate.positive_int(max_queue, "max_queue")
        # The queue, the thread and the counters are guarded by _cond.
        self._cond = threading.Condition()
        self._queue: deque[StateChange] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._accepted = 0
        self._wake = threading.Event()  # set by close() to cut a backoff wait short

    def __call__(self, event: StateChange) -> None:
        if self.states is not None and event.new.value not in self.states:
            return
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._accepted += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mds-webhook-notifier", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> bool:
        """Stop after the queued events have been tried; return whether the thread ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        self._wake.set()
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return
                event = self._queue.popleft()
            ok = self._post(event_payload(event))
            with self._cond:
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                self._cond.notify_all()

    def _post(self, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload).encode()
        delay = self.backoff_seconds
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=self.headers)
            try:
                with self._open(request, timeout=self.timeout_seconds) as response:
                    response.read()
                return True
            except urllib.error.HTTPError as exc:
                retry = exc.code >= 500
                reason = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                retry = True
                reason = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "webhook.post_failed",
                extra={"url": self.url, "attempt": attempt + 1, "reason": reason},
            )
            if not retry or attempt == self.max_retries or self._wake.wait(delay):
                break
            delay *= 2
        return False

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every accepted event has been sent or given up on."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.sent + self.failed + self.dropped >= self._accepted, timeout
            )
