from __future__ import annotations

import threading

from market_data_services.runtime.events import EventDispatcher


def test_deliveries_run_in_submission_order_on_one_named_thread() -> None:
    dispatcher = EventDispatcher(name="mds-test")
    seen: list[tuple[int, str]] = []
    for i in range(100):
        dispatcher.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert dispatcher.flush(5)
    assert [i for i, _ in seen] == list(range(100))
    assert {name for _, name in seen} == {"mds-test"}
    assert dispatcher.shutdown(2)


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    dispatcher = EventDispatcher(max_queue=2)
    gate, busy = threading.Event(), threading.Event()
    seen: list[int] = []

    def hold_the_worker() -> None:
        busy.set()
        gate.wait(5)

    dispatcher.submit(hold_the_worker)
    # Only once the worker holds it is the queue empty: before that, the held delivery is
    # itself the oldest in the queue, dropped in place of one of the five.
    assert busy.wait(5)
    for i in range(5):
        dispatcher.submit(lambda i=i: seen.append(i))
    gate.set()
    assert dispatcher.flush(5)
    assert dispatcher.dropped >= 3
    assert seen[-1] == 4  # the newest survives
    dispatcher.shutdown(2)


def test_a_failing_delivery_is_counted_and_the_worker_goes_on() -> None:
    dispatcher = EventDispatcher()
    seen: list[int] = []
    dispatcher.submit(lambda: 1 / 0)
    dispatcher.submit(lambda: seen.append(1))
    assert dispatcher.flush(5)
    assert dispatcher.errors == 1 and seen == [1]
    dispatcher.shutdown(2)
