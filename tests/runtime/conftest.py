from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from market_data_services.runtime.events import EventDispatcher


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dispatcher() -> EventDispatcher:
    d = EventDispatcher(name="test-events")
    yield d
    d.shutdown(timeout=2.0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()
