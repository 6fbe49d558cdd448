"""WebhookNotifier against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from market_data_services import CircuitBreaker, WebhookNotifier
from market_data_services.runtime.events import EventDispatcher


class Receiver:
    """A webhook endpoint that answers with the status codes it is told to, in order."""

    def __init__(self, statuses: list[int] | None = None, hang: threading.Event | None = None):
        self.bodies: list[dict] = []
        self.statuses = list(statuses or [])
        self.hang = hang
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang is not None:
                    receiver.hang.wait(10)
                receiver.bodies.append(json.loads(body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def open_breaker(notifier: WebhookNotifier, dispatcher: EventDispatcher, *others) -> CircuitBreaker:
    breaker = CircuitBreaker(
        failure_threshold=1,
        name="AggregatorService",
        dispatcher=dispatcher,
        listeners=[notifier, *others],
    )
    breaker.record_failure(ConnectionError("database is locked"))
    return breaker


def test_posts_service_states_time_and_recent_error(receiver_factory, dispatcher) -> None:
    receiver = receiver_factory()
    notifier = WebhookNotifier(receiver.url)
    before = time.time()
    open_breaker(notifier, dispatcher)
    assert dispatcher.flush(5) and notifier.wait_idle(5)
    (body,) = receiver.bodies
    assert body["service"] == "AggregatorService"
    assert (body["old_state"], body["new_state"]) == ("closed", "open")
    assert body["recent_error"] == "ConnectionError: database is locked"
    assert body["time"].endswith("Z")
    assert body["open_timeout_seconds"] == 60
    assert notifier.sent == 1 and before > 0
    notifier.close()


def test_retries_server_errors_then_succeeds(receiver_factory, dispatcher) -> None:
    receiver = receiver_factory(statuses=[503, 500, 200])
    notifier = WebhookNotifier(receiver.url, max_retries=3, backoff_seconds=0.01)
    open_breaker(notifier, dispatcher)
    assert dispatcher.flush(5) and notifier.wait_idle(5)
    assert len(receiver.bodies) == 3
    assert (notifier.sent, notifier.failed) == (1, 0)
    notifier.close()


def test_gives_up_after_bounded_retries_and_does_not_retry_client_errors(
    receiver_factory, dispatcher
) -> None:
    always_down = receiver_factory(statuses=[500] * 10)
    notifier = WebhookNotifier(always_down.url, max_retries=2, backoff_seconds=0.01)
    open_breaker(notifier, dispatcher)
    assert dispatcher.flush(5) and notifier.wait_idle(5)
    assert len(always_down.bodies) == 3  # one try and two retries
    assert notifier.failed == 1
    notifier.close()

    rejected = receiver_factory(statuses=[400])
    notifier = WebhookNotifier(rejected.url, max_retries=5, backoff_seconds=0.01)
    open_breaker(notifier, dispatcher)
    assert dispatcher.flush(5) and notifier.wait_idle(5)
    assert len(rejected.bodies) == 1
    notifier.close()


def test_a_hanging_webhook_delays_neither_the_caller_nor_other_listeners(
    receiver_factory, dispatcher
) -> None:
    hang = threading.Event()
    receiver = receiver_factory(hang=hang)
    notifier = WebhookNotifier(receiver.url, timeout_seconds=0.3, max_retries=0)
    seen = []
    started = time.monotonic()
    breaker = open_breaker(notifier, dispatcher, seen.append)
    breaker.reset()
    assert time.monotonic() - started < 0.3  # the caller did not wait for the webhook
    assert dispatcher.flush(2)  # other listeners ran while the POST hangs
    assert [e.new.value for e in seen] == ["open", "closed"]
    assert notifier.wait_idle(5)
    assert notifier.failed >= 1  # timed out, gave up, and the thread is free again
    assert notifier.close(timeout=2)


def test_only_chosen_states_are_sent(receiver_factory, dispatcher) -> None:
    receiver = receiver_factory()
    notifier = WebhookNotifier(receiver.url, states=frozenset({"open"}))
    breaker = open_breaker(notifier, dispatcher)
    breaker.reset()
    assert dispatcher.flush(5) and notifier.wait_idle(5)
    assert [b["new_state"] for b in receiver.bodies] == ["open"]
    notifier.close()


def test_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="url must start with http"):
        WebhookNotifier("ftp://example")
