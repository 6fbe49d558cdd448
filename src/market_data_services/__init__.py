"""market-data-services: observable background services for market data.

The public API is re-exported here::

    from market_data_services import AggregatorService, CircuitBreaker, ThreadedBackgroundService
    from market_data_services import read_candles, read_book_metrics, read_sentiment

The re-exports are resolved on first use (PEP 562 ``__getattr__``), not at import: every
``mds`` command imports this package first, and ``mds --version`` should not pay for
SQLAlchemy, numpy and OpenTelemetry that the services need.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from market_data_services._lazy import lazy_exports
from market_data_services._version import __version__

if TYPE_CHECKING:
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

#: public name -> the module it comes from
_EXPORTS = {
    "AggregatorService": "market_data_services.aggregators.candles",
    "DOMAggregatorService": "market_data_services.aggregators.dom",
    "RetentionService": "market_data_services.aggregators.retention",
    "SentimentAggregatorService": "market_data_services.aggregators.sentiment",
    "CircuitBreaker": "market_data_services.runtime",
    "CircuitBreakerError": "market_data_services.runtime",
    "CircuitBreakerState": "market_data_services.runtime",
    "IterationOutcome": "market_data_services.runtime",
    "StateChange": "market_data_services.runtime",
    "ThreadedBackgroundService": "market_data_services.runtime",
    "WebhookNotifier": "market_data_services.runtime",
    "UnknownSymbolError": "market_data_services.storage",
    "iter_book_metrics": "market_data_services.storage",
    "iter_candles": "market_data_services.storage",
    "iter_sentiment": "market_data_services.storage",
    "read_book_metrics": "market_data_services.storage",
    "read_candles": "market_data_services.storage",
    "read_sentiment": "market_data_services.storage",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
