"""The health rule on a fake clock: a service whose database comes back is healthy again
within two intervals (or two minutes, whichever is longer); one that keeps failing, or
fails on and off at a high rate, stays degraded.

The services run their real iterations, breaker and bookkeeping through ``run_once()``
on the loop's own schedule (``drive`` below), with time that advances only as an
iteration works or the loop waits, so hours of operation take milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from market_data_services.app.health import HealthRule, health_report
from market_data_services.runtime import (
    CircuitBreaker,
    FailureCondition,
    ThreadedBackgroundService,
)

START = 1_000_000.0
#: How long a good iteration works, and how long a failing one waits before it fails
#: (SQLite's busy timeout on a locked database).
WORK_SECONDS = 0.2
FAIL_SECONDS = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Worker(ThreadedBackgroundService):
    """Works while ``database_up(now)`` says the database answers, fails otherwise.

    Its breaker has the shipped defaults (5 failures, 60 s open, 3 trial calls).
    """

    def __init__(
        self,
        clock: Clock,
        interval: float,
        database_up: Callable[[float], bool] = lambda _t: True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            None,
            ["EUR/USD"],
            interval,
            clock=clock,
            wall_clock=clock,
            registry=CollectorRegistry(),
            circuit_breaker=CircuitBreaker(name="Worker", clock=clock, wall_clock=clock),
            **kwargs,
        )
        self.clock = clock
        self.database_up = database_up

    @property
    def service_name(self) -> str:
        return "Worker"

    def _process_iteration(self) -> None:
        started = self.clock.now
        if not self.database_up(started):
            self.clock.now += FAIL_SECONDS
            raise RuntimeError("database is locked")
        self.clock.now += WORK_SECONDS


def drive(
    service: Worker, until: float, observe: Callable[[float, int, dict[str, Any]], None]
) -> None:
    """Run ``service`` on the loop's grid until the clock reaches ``until``, calling
    ``observe(now, status, entry)`` after each iteration (or skip). ``status`` is the
    HTTP status the service alone would get from its judged reasons (200 or 503)."""
    clock = service.clock
    rule = HealthRule()
    next_start = clock.now
    while clock.now < until:
        service.run_once()
        _, report = health_report([service], rule, wall_clock=clock)
        entry = report["services"]["Worker"]
        observe(clock.now, 503 if judged(entry) else 200, entry)
        next_start += service.interval_seconds
        next_start = max(next_start, clock.now)  # overran: the loop starts the next at once
        clock.now = next_start


def judged(entry: dict[str, Any]) -> list[str]:
    """The reasons beyond "not running" (these services iterate through run_once)."""
    return [r for r in entry["reasons"] if r != "not running"]


INTERVALS = [1.0, 5.0, 30.0, 60.0, 300.0]  # the demo feed, books, sentiment, candles, slow


@pytest.mark.parametrize("outage", [90.0, 1200.0])
@pytest.mark.parametrize("phase", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("interval", INTERVALS)
def test_a_service_is_healthy_within_two_intervals_of_its_database_returning(
    interval: float, phase: float, outage: float
) -> None:
    clock = Clock()
    # The outage covers the iteration due at 20 intervals, starting ``phase`` of the way
    # through the gap before it (or through the outage, when it is shorter).
    down_from = START + 20 * interval - phase * min(interval, outage)
    back_at = down_from + outage
    bound = max(2 * interval, 120.0)
    service = Worker(clock, interval, lambda t: not down_from <= t < back_at)
    seen: list[tuple[float, int, list[str]]] = []
    drive(
        service,
        back_at + bound + 10 * interval,
        lambda now, status, entry: seen.append((now, status, judged(entry))),
    )
    degraded = [
        (t, reasons) for t, status, reasons in seen if down_from < t <= back_at and status != 200
    ]
    assert degraded, "the outage was noticed"
    after = [(t, status) for t, status, _ in seen if t >= back_at]
    first_healthy = next(t for t, status in after if status == 200)
    assert first_healthy - back_at <= bound
    assert all(status == 200 for t, status in after if t >= first_healthy)


@pytest.mark.parametrize("interval", [1.0, 60.0])
def test_a_service_whose_database_stays_down_stays_degraded(interval: float) -> None:
    clock = Clock()
    down_from = START + 30 * interval
    service = Worker(clock, interval, lambda t: t < down_from)
    seen: list[tuple[float, int, list[str]]] = []
    drive(
        service,
        down_from + 3600.0,
        lambda now, status, entry: seen.append((now, status, judged(entry))),
    )
    during = [(status, reasons) for t, status, reasons in seen if t > down_from]
    assert len(during) > 10
    assert all(status == 503 for status, _ in during)
    # While the breaker is open the latest iteration that ran (its last trial) failed.
    assert all(any("failed" in r for r in reasons) for _, reasons in during)


def every_nth_iteration(n: int) -> Callable[[float], bool]:
    calls = iter(range(1, 10**9))
    return lambda _t: next(calls) % n != 0


def locked_30s_every_2_minutes(t: float) -> bool:
    return (t - START) % 120.0 >= 30.0


@pytest.mark.parametrize(
    ("interval", "database_up"),
    [
        (1.0, every_nth_iteration(3)),
        (60.0, every_nth_iteration(3)),
        (1.0, every_nth_iteration(10)),
        (60.0, every_nth_iteration(10)),
        (1.0, locked_30s_every_2_minutes),
        (5.0, locked_30s_every_2_minutes),
    ],
    ids=[
        "1s-one-in-3",
        "60s-one-in-3",
        "1s-one-in-10",
        "60s-one-in-10",
        "1s-locked-30s-every-2min",
        "5s-locked-30s-every-2min",
    ],
)
def test_failures_on_and_off_at_a_high_rate_keep_the_service_degraded(
    interval: float, database_up: Callable[[float], bool]
) -> None:
    clock = Clock()
    service = Worker(clock, interval, database_up)
    seen: list[tuple[int, dict[str, Any]]] = []
    drive(service, START + max(3600.0, 60 * interval), lambda _t, s, e: seen.append((s, e)))
    # From the second run of failures on, never healthy.
    second_run = next(i for i, (_, entry) in enumerate(seen) if entry["failure_runs"] >= 2)
    assert second_run < len(seen) // 2
    assert all(status == 503 for status, _ in seen[second_run:])
    recovered_between_failures = [e for s, e in seen[second_run:] if e["consecutive_failures"] == 0]
    assert recovered_between_failures
    assert all(
        any("separate runs of failures" in r for r in e["reasons"])
        for e in recovered_between_failures
    )


def test_a_rare_failure_degrades_only_until_the_next_success() -> None:
    clock = Clock()
    service = Worker(clock, 1.0, every_nth_iteration(100))  # 1 %: below the 5 % threshold
    seen: list[tuple[int, dict[str, Any]]] = []
    drive(service, START + 1800.0, lambda _t, s, e: seen.append((s, e)))
    failed = [(s, e) for s, e in seen if e["consecutive_failures"]]
    good = [(s, e) for s, e in seen if not e["consecutive_failures"]]
    assert len(failed) >= 10
    assert all(s == 503 and judged(e) == ["the latest iteration failed"] for s, e in failed)
    assert all(s == 200 for s, _ in good)


def test_two_outages_within_the_window_keep_the_service_degraded_until_the_first_leaves_it() -> (
    None
):
    clock = Clock()
    first = (START + 100.0, START + 130.0)
    second = (START + 300.0, START + 330.0)

    def database_up(t: float) -> bool:
        return not (first[0] <= t < first[1] or second[0] <= t < second[1])

    service = Worker(clock, 5.0, database_up)
    seen: list[tuple[float, int, dict[str, Any]]] = []
    drive(service, START + 1200.0, lambda t, s, e: seen.append((t, s, e)))
    # Between the outages, the first one is over: healthy.
    assert all(s == 200 for t, s, _ in seen if first[1] + 90.0 < t < second[0])
    # After the second, two runs of failures in the 600 s window: degraded until the
    # first run leaves the window, healthy after.
    after_second = [(t, s) for t, s, _ in seen if second[1] + 90.0 < t]
    assert all(s == 503 for t, s in after_second if t < first[0] + 600.0)
    assert all(s == 200 for t, s in after_second if t > first[1] + 600.0 + 10.0)


def test_the_window_of_a_slow_service_holds_at_least_the_last_20_iterations() -> None:
    clock = Clock()
    failing = {2, 9}  # two single failures among 20 iterations of a 60 s service

    calls = iter(range(1, 10**6))
    service = Worker(clock, 60.0, lambda _t: next(calls) not in failing)
    seen: list[dict[str, Any]] = []
    drive(service, START + 20 * 60.0 - 1, lambda _t, _s, e: seen.append(e))
    last = seen[-1]
    assert last["recent_iterations"] == 20  # 600 s alone would hold only 10
    assert last["recent_errors"] == 2
    assert last["recent_error_rate"] == "10.00%"
    assert last["failure_runs"] == 2
    assert last["status"] == "degraded"
    assert last["error_rate"] == "10.00%"  # the specification's lifetime figure, beside it


def test_a_window_of_zero_uses_every_kept_iteration() -> None:
    clock = Clock()
    outcomes = iter([False, True, False, True])  # down, up (hours later), down, up
    service = Worker(clock, 1.0, lambda _t: next(outcomes))
    service.run_once()
    clock.now += 10_000
    for _ in range(3):
        service.run_once()
    recent = HealthRule(error_rate_window_seconds=600, error_rate_min_iterations=1)
    _, report = health_report([service], recent, wall_clock=clock)
    assert judged(report["services"]["Worker"]) == []  # one run of failures, and over
    assert report["services"]["Worker"]["recent_iterations"] == 3
    every = HealthRule(error_rate_window_seconds=0)
    _, report = health_report([service], every, wall_clock=clock)
    assert judged(report["services"]["Worker"]) == [
        "error rate 50.00% over the last 4 iterations >= 5.00%, in 2 separate runs of failures"
    ]


def test_a_known_condition_shows_with_its_hint_while_it_lasts() -> None:
    clock = Clock()
    condition = FailureCondition(name="schema_not_current", hint="run `mds db upgrade`")
    service = Worker(
        clock,
        60.0,
        lambda _t: False,
        failure_classifier=lambda exc: condition if "locked" in str(exc) else None,
    )
    service.run_once()
    _, report = health_report([service], HealthRule(), wall_clock=clock)
    entry = report["services"]["Worker"]
    assert entry["condition"] == "schema_not_current"
    assert judged(entry) == ["the latest iteration failed", "run `mds db upgrade`"]
    service.database_up = lambda _t: True
    service.run_once()
    _, report = health_report([service], HealthRule(), wall_clock=clock)
    assert report["services"]["Worker"]["condition"] is None
    assert judged(report["services"]["Worker"]) == []


def test_a_stuck_iteration_makes_the_service_degraded() -> None:
    clock = Clock()
    release = threading.Event()

    class Blocking(Worker):
        def _process_iteration(self) -> None:
            release.wait(10)

    service = Blocking(clock, 1.0, stuck_after_seconds=5.0)
    worker = threading.Thread(target=service.run_once)
    worker.start()
    try:
        clock.now += 6.0
        status, report = health_report([service], HealthRule(), wall_clock=clock)
        assert status == 503
        assert report["services"]["Worker"]["stuck"] is True
        assert judged(report["services"]["Worker"]) == ["iteration running for 6s (stuck after 5s)"]
    finally:
        release.set()
        worker.join(5)


def test_no_services_is_healthy() -> None:
    status, report = health_report([], HealthRule())
    assert status == 200
    assert report["services"] == {}
