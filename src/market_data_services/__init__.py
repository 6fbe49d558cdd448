"""market-data-services: observable background services for market data.

The public API is re-exported here::

    from market_data_services import AggregatorService, CircuitBreaker, ThreadedBackgroundService
"""

import logging

from market_data_services._version import __version__
from market_data_services.aggregators.candles import AggregatorService
from market_data_services.aggregators.dom import DOMAggregatorService
from market_data_services.aggregators.retention import RetentionService
from market_data_services.aggregators.sentiment import SentimentAggregatorService
from market_data_services.runtime import (
    CircuitBreaker,
    CircuitBreakerError,
    CircuitBreakerState,
    IterationOutcome,
    StateChange,
    ThreadedBackgroundService,
    WebhookNotifier,
)

# A library logs; the application decides where to (``mds`` configures handlers).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AggregatorService",
    "CircuitBreaker",
    "CircuitBreakerError",
    "CircuitBreakerState",
    "DOMAggregatorService",
    "IterationOutcome",
    "RetentionService",
    "SentimentAggregatorService",
    "StateChange",
    "ThreadedBackgroundService",
    "WebhookNotifier",
    "__version__",
]
