from __future__ import annotations

import threading
import time

import pytest

from market_data_services import CircuitBreaker, CircuitBreakerError, CircuitBreakerState
from market_data_services.runtime.breaker import StateChange

from .conftest import FakeClock

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN


def make(clock: FakeClock, dispatcher, **kw) -> CircuitBreaker:
    return CircuitBreaker(clock=clock, dispatcher=dispatcher, **kw)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.can_execute()
        breaker.record_failure(RuntimeError("db down"))


def test_specification_defaults() -> None:
    breaker = CircuitBreaker()
    assert (breaker.failure_threshold, breaker.timeout, breaker.half_open_max_calls) == (5, 60.0, 3)
    assert breaker.state is CLOSED


def test_consecutive_failures_open_it_and_a_success_resets_the_count(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=3)
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert not breaker.can_execute()


def test_open_becomes_half_open_after_timeout_when_only_state_is_read(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, timeout=60)
    fail(breaker, 1)
    clock.advance(59.9)
    assert breaker.state is OPEN
    assert breaker.seconds_until_half_open() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN


def test_half_open_admits_at_most_max_calls_at_once(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, timeout=10, half_open_max_calls=3)
    fail(breaker, 1)
    clock.advance(10)
    permits = [breaker.acquire() for _ in range(5)]
    assert [p is not None for p in permits] == [True, True, True, False, False]
    # A trial that ends without a verdict frees its slot for another caller.
    breaker.record_ignored(permits[0])
    assert breaker.acquire() is not None
    assert breaker.state is HALF_OPEN


def test_trial_success_closes_and_trial_failure_reopens_with_fresh_timeout(
    clock, dispatcher
) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, timeout=10)
    fail(breaker, 1)
    clock.advance(10)
    permit = breaker.acquire()
    breaker.record_failure(RuntimeError("still down"), permit)
    assert breaker.state is OPEN
    clock.advance(9)
    assert breaker.state is OPEN  # the timeout restarted at the trial failure
    clock.advance(1)
    permit = breaker.acquire()
    breaker.record_success(permit)
    assert breaker.state is CLOSED
    assert breaker.can_execute()


def test_success_threshold_needs_that_many_trial_successes(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, timeout=1, success_threshold=2)
    fail(breaker, 1)
    clock.advance(1)
    breaker.record_success(breaker.acquire())
    assert breaker.state is HALF_OPEN
    breaker.record_success(breaker.acquire())
    assert breaker.state is CLOSED


def test_expired_trial_lease_reopens_instead_of_staying_half_open(clock, dispatcher) -> None:
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=1,
        timeout=10,
        half_open_max_calls=1,
        trial_lease_seconds=5,
    )
    fail(breaker, 1)
    clock.advance(10)
    hung = breaker.acquire()
    assert hung is not None
    assert breaker.acquire() is None  # the single slot is taken by the hung call
    clock.advance(5)
    assert breaker.state is OPEN  # the lease expired: counted as a failed trial
    clock.advance(10)
    fresh = breaker.acquire()
    assert fresh is not None
    # The hung call's late answer belongs to an older epoch and changes nothing.
    breaker.record_success(hung)
    assert breaker.state is HALF_OPEN
    breaker.record_success(fresh)
    assert breaker.state is CLOSED


def test_stale_permit_from_before_the_breaker_opened_is_ignored(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, timeout=1)
    early = breaker.acquire()
    fail(breaker, 1)
    clock.advance(1)
    trial = breaker.acquire()
    breaker.record_success(early)  # admitted while CLOSED, long ago
    assert breaker.state is HALF_OPEN
    breaker.record_failure(RuntimeError("x"), early)
    assert breaker.state is HALF_OPEN
    breaker.record_success(trial)
    assert breaker.state is CLOSED


def test_ignored_exceptions_count_as_neither_success_nor_failure(clock, dispatcher) -> None:
    breaker = make(
        clock, dispatcher, failure_threshold=2, timeout=1, ignored_exceptions=(KeyError,)
    )
    breaker.record_failure(RuntimeError("a"))
    breaker.record_failure(KeyError("not the dependency's fault"))
    assert breaker.failure_count == 1  # not reset, as a success would have done
    breaker.record_failure(RuntimeError("b"))
    assert breaker.state is OPEN
    clock.advance(1)
    permit = breaker.acquire()
    breaker.record_failure(KeyError("x"), permit)
    assert breaker.state is HALF_OPEN  # neither closed nor reopened


def test_failure_exceptions_limit_what_counts(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, failure_exceptions=(OSError,))
    breaker.record_failure(ValueError("bad row"))
    assert breaker.state is CLOSED
    breaker.record_failure(ConnectionError("refused"))
    assert breaker.state is OPEN


def test_open_timeout_grows_on_repeated_reopens_up_to_the_cap(clock, dispatcher) -> None:
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=1,
        timeout=10,
        timeout_multiplier=2,
        max_timeout=25,
    )
    fail(breaker, 1)
    waits = []
    for _ in range(3):
        waits.append(breaker.seconds_until_half_open())
        clock.advance(breaker.seconds_until_half_open() or 0)
        breaker.record_failure(RuntimeError("still down"), breaker.acquire())
    waits.append(breaker.seconds_until_half_open())
    assert waits == [10, 20, 25, 25]
    clock.advance(25)
    breaker.record_success(breaker.acquire())
    fail(breaker, 1)
    assert breaker.seconds_until_half_open() == 10  # a close resets the growth


def test_jitter_lengthens_the_open_timeout_by_a_random_fraction(clock, dispatcher) -> None:
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=1,
        timeout=10,
        timeout_jitter=0.5,
        random=lambda: 0.5,
    )
    fail(breaker, 1)
    assert breaker.seconds_until_half_open() == pytest.approx(12.5)


def test_failure_rate_rule_opens_on_a_sliding_window(clock, dispatcher) -> None:
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=100,
        failure_rate_threshold=0.5,
        sliding_window_size=10,
        minimum_calls=6,
    )
    # Alternating outcomes never reach 100 consecutive failures, but the rate is 50 %.
    for i in range(5):
        breaker.record_failure(RuntimeError("x")) if i % 2 else breaker.record_success()
    assert breaker.state is CLOSED  # 5 calls: below minimum_calls
    breaker.record_failure(RuntimeError("x"))
    assert breaker.state is OPEN


def test_failure_rate_window_forgets_old_outcomes(clock, dispatcher) -> None:
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=100,
        failure_rate_threshold=0.5,
        sliding_window_size=4,
        minimum_calls=4,
    )
    for _ in range(2):
        breaker.record_failure(RuntimeError("x"))
    breaker.record_success()
    breaker.record_success()  # window F F S S: 50 % would trip, but only on a failure
    assert breaker.state is CLOSED
    breaker.record_success()
    breaker.record_success()  # window S S S S
    breaker.record_failure(RuntimeError("x"))  # S S S F: 25 %
    assert breaker.state is CLOSED


def test_force_open_holds_until_reset(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, timeout=1)
    breaker.force_open()
    clock.advance(3600)
    assert breaker.state is OPEN
    assert breaker.seconds_until_half_open() is None
    breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.can_execute()


def test_call_raises_circuit_breaker_error_when_open(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1, name="db")
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    with pytest.raises(CircuitBreakerError, match="'db' is open"):
        breaker.call(lambda: "never runs")
    assert breaker.last_error == "ZeroDivisionError: division by zero"


def test_listeners_see_transitions_in_order_with_reasons(clock, dispatcher) -> None:
    events: list[StateChange] = []
    opened: list[CircuitBreaker] = []
    breaker = make(
        clock,
        dispatcher,
        failure_threshold=2,
        timeout=5,
        name="svc",
        listeners=[events.append],
        on_open=opened.append,
    )
    fail(breaker, 2)
    clock.advance(5)
    breaker.record_failure(RuntimeError("again"), breaker.acquire())
    clock.advance(5)
    breaker.record_success(breaker.acquire())
    assert dispatcher.flush(timeout=2)
    assert [(e.old, e.new) for e in events] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert events[0].reason == "2 consecutive failures"
    assert events[0].last_error == "RuntimeError: db down"
    assert events[0].open_timeout_seconds == 5
    assert opened == [breaker, breaker]


def test_on_open_assigned_after_construction_is_called(clock, dispatcher) -> None:
    breaker = make(clock, dispatcher, failure_threshold=1)
    seen = []
    breaker.on_open = lambda cb: seen.append(cb.state)
    fail(breaker, 1)
    assert dispatcher.flush(timeout=2)
    assert seen == [OPEN]


def test_slow_listener_never_delays_the_caller(clock, dispatcher) -> None:
    release = threading.Event()
    breaker = make(clock, dispatcher, failure_threshold=1)
    breaker.add_listener(lambda event: release.wait(10))
    started = time.perf_counter()
    fail(breaker, 1)
    breaker.reset()
    elapsed = time.perf_counter() - started
    release.set()
    assert elapsed < 1.0  # the listener blocks for up to 10 s on another thread
    assert dispatcher.flush(timeout=5)


def test_failing_listener_is_logged_counted_and_others_still_run(clock, dispatcher, caplog) -> None:
    seen = []

    def broken(event: StateChange) -> None:
        raise RuntimeError("webhook exploded")

    breaker = make(clock, dispatcher, failure_threshold=1, listeners=[broken, seen.append])
    fail(breaker, 1)
    breaker.reset()
    assert dispatcher.flush(timeout=2)
    assert [e.new for e in seen] == [OPEN, CLOSED]
    assert breaker.listener_errors == 2
    assert "circuit_breaker.listener_failed" in caplog.text


def test_removed_listener_is_not_called(clock, dispatcher) -> None:
    seen = []
    breaker = make(clock, dispatcher, failure_threshold=1)
    breaker.add_listener(seen.append)
    breaker.remove_listener(seen.append)
    fail(breaker, 1)
    assert dispatcher.flush(timeout=2)
    assert seen == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": -3}, "failure_threshold must be >= 1, got -3"),
        ({"timeout": -1}, "timeout must be >= 0, got -1"),
        ({"timeout": float("nan")}, "timeout must be finite"),
        ({"half_open_max_calls": 0}, "half_open_max_calls must be >= 1, got 0"),
        ({"success_threshold": 0}, "success_threshold must be >= 1"),
        ({"timeout_multiplier": 0.5}, "timeout_multiplier must be >= 1.0"),
        ({"timeout_jitter": 2}, "timeout_jitter must satisfy 0 <= x <= 1"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold must satisfy 0 < x <= 1"),
        ({"sliding_window_size": 0}, "sliding_window_size must be >= 1"),
        ({"trial_lease_seconds": 0}, "trial_lease_seconds must be > 0"),
    ],
)
def test_nonsense_arguments_are_rejected_naming_the_argument(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        CircuitBreaker(**kwargs)


def test_unknown_state_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid states: closed, half_open, open"):
        CircuitBreakerState.parse("ajar")
