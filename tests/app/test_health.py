from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry

from market_data_services.app.health import HealthRule, health_report
from market_data_services.runtime import CircuitBreaker, ThreadedBackgroundService


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Flaky(ThreadedBackgroundService):
    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        super().__init__(
            None,
            ["EUR/USD"],
            1.0,
            clock=clock,
            wall_clock=clock,
            registry=CollectorRegistry(),
            circuit_breaker=CircuitBreaker(failure_threshold=100, name="Flaky"),
            **kwargs,
        )
        self.fail = False
        self.release = threading.Event()
        self.block = False

    @property
    def service_name(self) -> str:
        return "Flaky"

    def _process_iteration(self) -> None:
        if self.block:
            self.release.wait(10)
        if self.fail:
            raise ValueError("bad tick")


def judged(report: dict[str, Any]) -> list[str]:
    """The reasons beyond "not running" (these services iterate through run_once)."""
    reasons: list[str] = report["services"]["Flaky"]["reasons"]
    return [r for r in reasons if r != "not running"]


def test_error_rate_is_judged_over_the_recent_window_only() -> None:
    clock = Clock()
    service = Flaky(clock)
    rule = HealthRule(error_rate_threshold=0.05, error_rate_window_seconds=60.0)
    service.fail = True
    for _ in range(3):
        service.run_once()
    service.fail = False
    for _ in range(10):
        service.run_once()
    _, report = health_report([service], rule, wall_clock=clock)
    entry = report["services"]["Flaky"]
    assert judged(report) == ["error rate 23.08% over the last 13 iterations >= 5.00%"]
    assert entry["recent_error_rate"] == "23.08%"  # 3 of 13
    assert entry["error_rate"] == "23.08%"

    clock.now += 61.0  # the failures leave the window
    service.run_once()
    _, report = health_report([service], rule, wall_clock=clock)
    entry = report["services"]["Flaky"]
    assert judged(report) == []
    assert entry["recent_iterations"] == 1
    assert entry["recent_error_rate"] == "0.00%"
    assert entry["error_rate"] == "21.43%"  # the specification's lifetime figure: 3 of 14


def test_a_window_of_zero_uses_every_kept_iteration() -> None:
    clock = Clock()
    service = Flaky(clock)
    service.fail = True
    service.run_once()
    clock.now += 10_000
    service.fail = False
    service.run_once()
    _, report = health_report([service], HealthRule(error_rate_window_seconds=0), wall_clock=clock)
    assert judged(report) == ["error rate 50.00% over the last 2 iterations >= 5.00%"]


def test_a_stuck_iteration_makes_the_service_degraded() -> None:
    clock = Clock()
    service = Flaky(clock, stuck_after_seconds=5.0)
    service.block = True
    worker = threading.Thread(target=service.run_once)
    worker.start()
    try:
        clock.now += 6.0
        status, report = health_report([service], HealthRule(), wall_clock=clock)
        assert status == 503
        assert report["services"]["Flaky"]["stuck"] is True
        assert judged(report) == ["iteration running for 6s (stuck after 5s)"]
    finally:
        service.release.set()
        worker.join(5)


def test_no_services_is_healthy() -> None:
    status, report = health_report([], HealthRule())
    assert status == 200
    assert report["services"] == {}
