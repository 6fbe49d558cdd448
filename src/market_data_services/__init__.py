"""market-data-services: observable background services for market data.

The public API is re-exported here::

    from market_data_services import AggregatorService, CircuitBreaker, ThreadedBackgroundService
    from market_data_services import read_candles, read_book_metrics, read_sentiment
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
from market_data_services.storage import (
    UnknownSymbolError,
    iter_book_metrics,
    iter_candles,
    iter_sentiment,
    read_book_metrics,
    read_candles,
    read_sentiment,
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
    "UnknownSymbolError",
    "WebhookNotifier",
    "__version__",
    "iter_book_metrics",
    "iter_candles",
    "iter_sentiment",
    "read_book_metrics",
    "read_candles",
    "read_sentiment",
]
