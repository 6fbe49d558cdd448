"""The breaker under real threads: admission races, lost updates, no serialisation."""

from __future__ import annotations

import itertools
import threading
import time

from market_data_services import CircuitBreaker, CircuitBreakerState
from market_data_services.runtime.events import EventDispatcher

from .conftest import FakeClock

THREADS = 64


def run_together(target, count: int = THREADS) -> None:
    barrier = threading.Barrier(count)

    def body() -> None:
        barrier.wait()
        target()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()


def test_many_threads_after_the_timeout_admit_exactly_max_calls_and_one_transition(
    clock: FakeClock, dispatcher
) -> None:
    for _ in range(20):  # repeat: a race shows itself only sometimes
        events = []
        breaker = CircuitBreaker(
            failure_threshold=1,
            timeout=30,
            half_open_max_calls=3,
            clock=clock,
            dispatcher=dispatcher,
            listeners=[events.append],
        )
        transitions = []
        breaker.add_listener(transitions.append, synchronous=True)
        breaker.record_failure(RuntimeError("down"))
        clock.advance(30)
        admitted = []
        lock = threading.Lock()

        def ask(breaker=breaker, lock=lock, admitted=admitted) -> None:
            permit = breaker.acquire()
            if permit is not None:
                with lock:
                    admitted.append(permit)

        run_together(ask)
        assert dispatcher.flush(timeout=5)
        assert len(admitted) == 3
        assert len({p.lease for p in admitted}) == 3
        into_half_open = [e for e in events if e.new is CircuitBreakerState.HALF_OPEN]
        assert len(into_half_open) == 1
        assert [e.new for e in transitions] == [e.new for e in events]


def test_concurrent_failures_are_all_counted(clock: FakeClock, dispatcher) -> None:
    breaker = CircuitBreaker(failure_threshold=THREADS * 10, clock=clock, dispatcher=dispatcher)

    def fail_ten_times() -> None:
        for _ in range(10):
            breaker.record_failure(RuntimeError("x"))

    run_together(fail_ten_times)
    assert breaker.state is CircuitBreakerState.OPEN  # reached only if no failure was lost


def test_concurrent_failures_one_short_of_the_threshold_keep_it_closed(
    clock: FakeClock, dispatcher
) -> None:
    breaker = CircuitBreaker(failure_threshold=THREADS * 10 + 1, clock=clock, dispatcher=dispatcher)
    run_together(lambda: [breaker.record_failure(RuntimeError("x")) for _ in range(10)])
    assert breaker.failure_count == THREADS * 10
    assert breaker.state is CircuitBreakerState.CLOSED


def test_guarded_work_runs_concurrently_not_one_at_a_time(dispatcher) -> None:
    breaker = CircuitBreaker(dispatcher=dispatcher)
    inside = 0
    most_inside = 0
    lock = threading.Lock()
    all_in = threading.Barrier(8, timeout=5)

    def work() -> None:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
        all_in.wait()  # would time out if the breaker let only one call in at a time
        with lock:
            inside -= 1

    threads = [threading.Thread(target=breaker.call, args=(work,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most_inside == 8
    assert not all_in.broken


def test_event_order_matches_transition_order_under_contention() -> None:
    # Real clock, zero timeout: threads race through OPEN -> HALF_OPEN -> CLOSED/OPEN.
    events = []
    dispatcher = EventDispatcher(max_queue=100_000)
    breaker = CircuitBreaker(
        failure_threshold=1,
        timeout=0,
        half_open_max_calls=2,
        dispatcher=dispatcher,
        listeners=[events.append],
    )

    def churn() -> None:
        for i in range(200):
            permit = breaker.acquire()
            if permit is None:
                continue
            if i % 3:
                breaker.record_failure(RuntimeError("x"), permit)
            else:
                breaker.record_success(permit)

    run_together(churn, count=8)
    assert dispatcher.flush(timeout=10)
    assert dispatcher.dropped == 0
    assert len(events) > 10
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    for before, after in itertools.pairwise(events):
        assert before.new is after.old  # each event continues where the last one ended
    dispatcher.shutdown()


def test_can_execute_and_record_are_cheap_enough_not_to_matter() -> None:
    # Not a timing assertion: a sanity check that the CLOSED path takes no sleep or I/O
    # (it must finish 10 000 guards in far less than the 60 s a sleep would need).
    breaker = CircuitBreaker()
    deadline = time.monotonic() + 60
    for _ in range(10_000):
        assert breaker.can_execute()
        breaker.record_success()
    assert time.monotonic() < deadline
