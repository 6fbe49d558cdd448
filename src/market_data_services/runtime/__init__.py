"""The base loop, the circuit breaker, telemetry, symbol configuration and notifications.

This layer knows nothing of market data.
"""

from market_data_services.runtime.breaker import (
    CircuitBreaker,
    CircuitBreakerError,
    CircuitBreakerState,
    Permit,
    StateChange,
)
from market_data_services.runtime.events import EventDispatcher
from market_data_services.runtime.notify import WebhookNotifier
from market_data_services.runtime.service import (
    FailureCondition,
    IterationOutcome,
    ThreadedBackgroundService,
)
from market_data_services.runtime.symbols import SymbolSource
from market_data_services.runtime.telemetry import ITERATION_BUCKETS

__all__ = [
    "ITERATION_BUCKETS",
    "CircuitBreaker",
    "CircuitBreakerError",
    "CircuitBreakerState",
    "EventDispatcher",
    "FailureCondition",
    "IterationOutcome",
    "Permit",
    "StateChange",
    "SymbolSource",
    "ThreadedBackgroundService",
    "WebhookNotifier",
]
