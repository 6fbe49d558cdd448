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
from collections.abc import Callable, Mapping
from typing import Any

from market_data_services.runtime import validate
from market_data_services.runtime.breaker import StateChange
from market_data_services.runtime.events import EventDispatcher
from market_data_services.timeutil import utc_iso

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
        self.timeout_seconds = validate.seconds(timeout_seconds, "timeout_seconds")
        self.max_retries = validate.positive_int(max_retries, "max_retries", minimum=0)
        self.backoff_seconds = validate.seconds(backoff_seconds, "backoff_seconds", allow_zero=True)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.states = states  # only these new states are sent; None sends all
        self._open = opener or urllib.request.urlopen
        # Its own worker thread and bounded queue: a hanging webhook holds up only this.
        self._dispatcher = EventDispatcher(
            max_queue=validate.positive_int(max_queue, "max_queue"), name="mds-webhook-notifier"
        )
        self._wake = threading.Event()  # set by close() to cut a backoff wait short
        self._counts_lock = threading.Lock()
        self.sent = 0  # guarded by _counts_lock, like failed
        self.failed = 0

    @property
    def dropped(self) -> int:
        """Events dropped because ``max_queue`` were already waiting."""
        return self._dispatcher.dropped

    def __call__(self, event: StateChange) -> None:
        if self.states is not None and event.new.value not in self.states:
            return
        self._dispatcher.submit(lambda: self._send(event))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every accepted event has been sent or given up on."""
        return self._dispatcher.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Try what is queued without backoff waits; return whether the worker ended."""
        self._wake.set()
        return self._dispatcher.shutdown(timeout)

    def _send(self, event: StateChange) -> None:
        ok = self._post(event_payload(event))
        with self._counts_lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1

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
